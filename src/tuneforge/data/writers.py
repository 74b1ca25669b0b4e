"""Write records back in any supported file format (split and convert outputs)."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_records(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` to ``path`` in the format its suffix names, atomically (temp file + rename).

    JSON is indented UTF-8 (Chinese stays readable); CSV stores nested values as JSON strings;
    TXT writes the ``text`` field one document per line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"cannot write {path.suffix!r} files; use .json, .jsonl, .csv, .parquet or .txt")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(Path(tmp), records)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _json(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _csv(path: Path, records: list[dict[str, Any]]) -> None:
    fields: dict[str, None] = {}
    for rec in records:
        fields.update(dict.fromkeys(rec))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        writer.writeheader()
        for rec in records:
            writer.writerow({k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                             for k, v in rec.items()})


def _parquet(path: Path, records: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)


def _txt(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(str(r.get("text", "")).replace("\n", " ") + "\n" for r in records), encoding="utf-8")


_WRITERS = {".json": _json, ".jsonl": _jsonl, ".csv": _csv, ".parquet": _parquet, ".txt": _txt}
