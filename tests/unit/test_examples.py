"""The shipped example configs: valid, and the alignment ones say how to run them and how long they take."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuneforge.config.load import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
ALIGNMENT = {"rm", "dpo", "simpo", "orpo", "kto", "ppo", "grpo"}


def _stages(path: Path) -> set[str]:
    cfg = load_config(path)
    return {cfg.training.stage} | {(s.training or {}).get("stage", "sft") for s in cfg.stages or []}


def test_every_alignment_stage_has_an_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES[0].parents[1])
    covered = set().union(*(_stages(p) for p in EXAMPLES))
    assert covered >= ALIGNMENT | {"sft"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parents[1])  # examples name their data relative to the repository root
    header = path.read_text(encoding="utf-8")
    if _stages(path) & ALIGNMENT:  # _stages validates every config
        assert "# Run: tuneforge" in header, f"{path.name}: no how-to-run header"
        assert re.search(r"# Run time on the 2-core CPU: \d+ s", header), f"{path.name}: no measured run time"
