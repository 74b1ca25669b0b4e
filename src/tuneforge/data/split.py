"""Seeded, stable train / validation / test splits (default 7 : 1.5 : 1.5, docs/data.md).

Records are ordered by a hash of (seed, content), then cut at exact counts: the result depends on
neither file order nor machine, and adding records moves few existing ones between splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from tuneforge.data.readers import read_file
from tuneforge.data.writers import write_records
from tuneforge.utils.errors import DataError, Problem

T = TypeVar("T")
SPLIT_NAMES = ("train", "validation", "test")


def split_counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Exact sizes: validation and test rounded, train takes the rest."""
    total = sum(ratios)
    n_val = round(n * ratios[1] / total)
    n_test = round(n * ratios[2] / total)
    return n - n_val - n_test, n_val, n_test


def split_indices(keys: list[str], ratios: tuple[float, float, float], seed: int) -> tuple[list[int], ...]:
    """Indices of the train, validation and test parts, each in original order."""
    order = sorted(range(len(keys)), key=lambda i: (hashlib.sha1(f"{seed}\0{keys[i]}".encode()).digest(), i))
    n_train, n_val, _ = split_counts(len(keys), ratios)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return tuple(sorted(p) for p in parts)


def split_items(items: list[T], keys: list[str], ratios: tuple[float, float, float],
                seed: int) -> tuple[list[T], list[T], list[T]]:
    """Split any list by content keys."""
    train, val, test = split_indices(keys, ratios, seed)
    return [items[i] for i in train], [items[i] for i in val], [items[i] for i in test]


def record_key(record: dict[str, Any]) -> str:
    """Content key of a raw record (independent of key order)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def split_file(path: str | Path, ratios: tuple[float, float, float], seed: int, out_dir: str | Path,
               overwrite: bool = False) -> dict[str, tuple[Path, int]]:
    """Split a data file into train/validation/test files of the same format in ``out_dir``.

    Raises:
        DataError: when the file cannot be read, or an output exists and ``overwrite`` is False.
    """
    path, out_dir = Path(path), Path(out_dir)
    result = read_file(path)
    if result.problems:
        raise DataError(f"cannot split {path}", result.problems)
    targets = {name: out_dir / f"{path.stem}.{name}{path.suffix}" for name in SPLIT_NAMES}
    existing = [Problem("output exists", file=str(p), fix="pass --overwrite or choose another --out")
                for p in targets.values() if p.exists() and not overwrite]
    if existing:
        raise DataError("refusing to overwrite split files", existing)
    records = [r.data for r in result.records]
    parts = split_items(records, [record_key(r) for r in records], ratios, seed)
    return {name: (write_records(targets[name], part), len(part))
            for name, part in zip(SPLIT_NAMES, parts, strict=True)}
