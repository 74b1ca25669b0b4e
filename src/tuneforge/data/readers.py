"""Read json / jsonl / csv / parquet / txt files into raw records, locating every problem.

We read files ourselves instead of through ``datasets.load_dataset`` because its errors do not
name the record or line (docs/data.md); the parsed records become a ``datasets.Dataset`` later.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.utils.errors import Problem

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


@dataclass(slots=True)
class RawRecord:
    """A record as read from a file, with its position."""

    data: dict[str, Any]
    index: int
    line: int | None


@dataclass
class ReadResult:
    """Records read from one file and the problems met (each names file, index, line)."""

    file: str
    records: list[RawRecord]
    problems: list[Problem]


def list_data_files(path: Path) -> list[Path]:
    """The file itself, or every supported file in a folder (sorted), as LLaMA-Factory does."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    return [path]


def read_file(path: str | Path) -> ReadResult:
    """Read one data file; never raises for bad content, returns problems instead."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        return ReadResult(name, [], [Problem("file not found", file=name,
                                             fix="check the path (relative paths are relative to the current folder)")])
    if path.suffix.lower() not in _READERS:
        return ReadResult(name, [], [Problem(
            f"unsupported file type {path.suffix!r}", file=name,
            fix=f"use one of {', '.join(SUFFIXES)}")])
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    text, problem = _decode(path)
    if problem is not None:
        return ReadResult(name, [], [problem])
    if not text.strip():
        return ReadResult(name, [], [Problem("file is empty", file=name, fix="add records or remove it from the config")])
    return _READERS[path.suffix.lower()](name, text)


def _decode(path: Path) -> tuple[str, Problem | None]:
    """UTF-8 text (a BOM is accepted); a located problem for other encodings."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return "", Problem(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", file=str(path), line=line,
            fix=f"re-save the file as UTF-8, e.g. `iconv -f GB18030 -t UTF-8 {path.name} > fixed{path.suffix}`")


def _read_json(name: str, text: str) -> ReadResult:
    """A JSON array of objects; each record's line is found while decoding."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if text[pos] != "[":
        return _json_not_array(name, text)
    records: list[RawRecord] = []
    problems: list[Problem] = []
    line, line_pos = 1, 0
    pos = _skip_ws(text, pos + 1)
    index = 0
    while pos < len(text) and text[pos] != "]":
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            problems.append(_json_problem(name, exc, index))
            return ReadResult(name, records, problems)
        _add_object(records, problems, name, obj, index, line)
        index += 1
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos < len(text) and text[pos] != "]":
            exc = json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            problems.append(_json_problem(name, exc, index))
            return ReadResult(name, records, problems)
    if pos >= len(text):
        problems.append(_json_problem(name, json.JSONDecodeError("Expecting ']' (unterminated array)", text, pos), None))
    elif text[pos + 1:].strip():
        problems.append(_json_problem(name, json.JSONDecodeError("Extra data after the array", text, pos + 1), None))
    return ReadResult(name, records, problems)


def _json_not_array(name: str, text: str) -> ReadResult:
    """A .json file that is not an array: JSON Lines under a .json name is accepted, the rest explained."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON Lines named .json, as `datasets` accepts
            return _read_jsonl(name, text)
        return ReadResult(name, [], [_json_problem(name, exc, None)])
    return ReadResult(name, [], [Problem(
        f"the top level is a {type(obj).__name__}, not a list of records", file=name, line=1,
        fix="wrap the records in [ ... ], or write one JSON object per line in a .jsonl file")])


def _read_jsonl(name: str, text: str) -> ReadResult:
    """One JSON object per line; blank lines are skipped; every bad line is reported."""
    records: list[RawRecord] = []
    problems: list[Problem] = []
    index = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(Problem(f"malformed JSON: {exc.msg} (column {exc.colno})", file=name, index=index,
                                    line=lineno, fix="fix the JSON on this line (each line must be one object)"))
        else:
            _add_object(records, problems, name, obj, index, lineno)
        index += 1
    return ReadResult(name, records, problems)


def _read_csv(name: str, text: str) -> ReadResult:
    """CSV with a header row; values are strings (JSON-looking list fields are decoded by the formats)."""
    reader = csv.DictReader(io.StringIO(text))
    records: list[RawRecord] = []
    problems: list[Problem] = []
    if not reader.fieldnames:
        return ReadResult(name, [], [Problem("no header row", file=name, line=1, fix="add a header naming the columns")])
    try:
        for index, row in enumerate(reader):
            if None in row:
                problems.append(Problem("more values than header columns", file=name, index=index,
                                        line=reader.line_num, fix="quote values that contain commas"))
                continue
            records.append(RawRecord({k: v for k, v in row.items() if k is not None}, index, reader.line_num))
    except csv.Error as exc:
        problems.append(Problem(f"malformed CSV: {exc}", file=name, line=reader.line_num,
                                fix="check quoting on this line"))
    return ReadResult(name, records, problems)


def _read_parquet(path: Path) -> ReadResult:
    """Parquet through pyarrow; nested columns become Python lists and dicts."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        return ReadResult(str(path), [], [Problem(f"cannot read parquet: {exc}", file=str(path),
                                                  fix="re-export the file with pandas/pyarrow")])
    if not rows:
        return ReadResult(str(path), [], [Problem("file is empty", file=str(path), fix="add records")])
    return ReadResult(str(path), [RawRecord(r, i, None) for i, r in enumerate(rows)], [])


def _read_txt(name: str, text: str) -> ReadResult:
    """Plain text for pre-training: each non-empty line is one document."""
    records = [RawRecord({"text": raw}, i, lineno)
               for i, (lineno, raw) in enumerate((n, r) for n, r in enumerate(text.splitlines(), 1) if r.strip())]
    return ReadResult(name, records, [])


_READERS = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv, ".txt": _read_txt, ".parquet": None}


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _add_object(records: list[RawRecord], problems: list[Problem], name: str, obj: Any, index: int,
                line: int | None) -> None:
    if isinstance(obj, dict):
        records.append(RawRecord(obj, index, line))
    else:
        problems.append(Problem(f"record is a {type(obj).__name__}, not an object", file=name, index=index,
                                line=line, fix='each record must be a JSON object such as {"instruction": ...}'))


def _json_problem(name: str, exc: json.JSONDecodeError, index: int | None) -> Problem:
    return Problem(f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", file=name, index=index,
                   line=exc.lineno, fix="fix the JSON at that position (a missing comma or quote is typical)")
