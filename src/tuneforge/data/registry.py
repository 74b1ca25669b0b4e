"""LLaMA-Factory ``dataset_info.json`` registries, read unchanged.

An entry names a local ``file_name`` (a file or a folder, relative to the registry's folder) and how to
read it: ``formatting`` (alpaca | sharegpt), ``columns``, ``tags``, ``ranking``, ``num_samples``.
Entries that point to a hub are refused with a message: tuneforge never downloads data at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.formats import FORMATS, FormatSpec
from tuneforge.utils.errors import Problem
from tuneforge.utils.names import suggestion

_HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
_MULTIMODAL = ("images", "videos", "audios")


@dataclass
class ResolvedDataset:
    """A dataset ready to read: display name, files, and how to parse them (None = detect)."""

    name: str
    path: Path
    spec: FormatSpec | None
    max_samples: int | None = None
    ratio: float = 1.0
    columns: dict[str, str] = field(default_factory=dict)


def read_dataset_info(path: str | Path) -> tuple[dict[str, Any], list[Problem]]:
    """Read a registry; problems (missing file, bad JSON, not a mapping) instead of exceptions."""
    path = Path(path)
    if not path.is_file():
        return {}, [Problem("dataset_info file not found", file=str(path), field="data.dataset_info",
                            fix="point data.dataset_info at an existing dataset_info.json")]
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {}, [Problem(f"cannot read dataset_info: {exc}", file=str(path), fix="fix the JSON")]
    if not isinstance(info, dict):
        return {}, [Problem("dataset_info must map dataset names to entries", file=str(path),
                            fix='write it as {"name": {"file_name": ...}}')]
    return info, []


def resolve_entry(name: str, info: dict[str, Any], info_path: Path) -> ResolvedDataset | Problem:
    """Turn one registry entry into a :class:`ResolvedDataset`, or a problem saying why not."""
    where = {"file": str(info_path), "field": f"data.datasets: {name}"}
    if name not in info:
        return Problem(f"dataset {name!r} is not in the registry.{suggestion(name, info)}",
                       fix=f"use a name defined in {info_path.name}, or give a file path", **where)
    entry = info[name]
    if not isinstance(entry, dict):
        return Problem(f"registry entry {name!r} is not an object", fix='write {"file_name": ...}', **where)
    if "file_name" not in entry:
        hub = next((f"{k}: {entry[k]}" for k in _HUB_KEYS if k in entry), "no file_name")
        return Problem(f"dataset {name!r} points to a hub ({hub}); the file must be local "
                       "(tuneforge never downloads data at run time)",
                       fix=f"download it yourself, save the file next to {info_path.name} and add \"file_name\"",
                       **where)
    columns = dict(entry.get("columns") or {})
    mm = [k for k in _MULTIMODAL if k in columns]
    if mm:
        return Problem(f"dataset {name!r} has {', '.join(mm)} columns: multimodal data is not supported yet",
                       fix="use a text-only dataset", **where)
    path = (info_path.parent / entry["file_name"]).resolve()
    return ResolvedDataset(name, path, _spec_of(entry, columns), entry.get("num_samples"), 1.0, columns)


def _spec_of(entry: dict[str, Any], columns: dict[str, str]) -> FormatSpec:
    """The format preset plus the entry's column and tag mappings."""
    formatting = entry.get("formatting", "alpaca")
    if formatting == "sharegpt" and entry.get("tags", {}).get("role_tag") == "role":
        base = FORMATS.get("messages")
    else:
        base = FORMATS.get("sharegpt" if formatting == "sharegpt" else "alpaca")
    if formatting != "sharegpt" and set(columns) == {"prompt"}:
        # LLaMA-Factory's pre-training entries map only the text column to 'prompt'.
        return FORMATS.get("text").with_overrides({"text": columns["prompt"]}, {})
    return base.with_overrides(columns, dict(entry.get("tags") or {}))
