"""Shared fixtures: the real tokenizer of the default model, tiny random models, data helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "llamafactory"


def _share_cores_between_workers() -> None:
    """Give each pytest-xdist worker its own cores, inherited by the trainings it starts.

    Every training sets its torch threads to the cores it may use (runner._set_threads). Without this, two
    workers on a 2-core machine would each run 2 threads, and oversubscribed OpenMP threads spin-wait for
    each other: both trainings crawl.
    """
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker.startswith("gw") or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores, index, n = sorted(os.sched_getaffinity(0)), int(worker[2:]), int(count)
    mine = cores[index::n] if n <= len(cores) else [cores[index % len(cores)]]
    os.sched_setaffinity(0, mine)
    import torch

    torch.set_num_threads(len(mine))


_share_cores_between_workers()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """LLaMA-Factory's demo files; a user's clone has no ../shared, so tests that need them skip there."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent (only CI and developers have it)")
    return FIXTURES


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The real tokenizer of the embedded default model (prepared by `make test`'s setup)."""
    from tuneforge.models.loading import load_tokenizer

    return load_tokenizer("default")


@pytest.fixture(scope="session")
def chat_template(tokenizer: Any) -> Any:
    """The tokenizer's own (ChatML) template."""
    from tuneforge.data.templates import resolve_template

    return resolve_template("auto", tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A saved tiny random model (2 layers, hidden 64) with the default tokenizer."""
    from tuneforge.models.tiny import save_tiny

    return save_tiny(tokenizer, tmp_path_factory.mktemp("tiny"))


def write_json(path: Path, records: Any) -> Path:
    """Write records as indented JSON (one field per line, so line numbers are meaningful)."""
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """Write one JSON value per line."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
