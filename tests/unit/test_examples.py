"""The shipped example configs: valid, and the alignment ones say how to run them and how long they take."""

from __future__ import annotations

import json
import re
from collections import Counter
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


DATA_FILES = sorted(p for d in ("examples/data", "data") for p in (EXAMPLES[0].parents[1] / d).glob("*.json")
                    if p.name != "dataset_info.json")


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_shipped_data_never_repeats_a_question(path: Path) -> None:
    # A question present twice can land in both the training and the held-out split, and inflate what the
    # example claims to have learned (the arithmetic file once had 39 repeats among 200).
    records = json.loads(path.read_text(encoding="utf-8"))
    questions = [(r["instruction"], r.get("input", "")) for r in records]
    repeated = [q for q, n in Counter(questions).items() if n > 1]
    assert not repeated, f"{path.name}: repeated questions {repeated[:3]}"


def test_mixed_answers_pad_about_half_of_the_direct_answers() -> None:
    # rlhf_pipeline's sft data: if none were padded the reward model would have nothing left for PPO to
    # teach; if all were, the sft stage would learn to pad. Each answer still holds the direct one.
    data = EXAMPLES[0].parent / "data"
    direct = json.loads((data / "concise_answers.json").read_text(encoding="utf-8"))
    mixed = json.loads((data / "mixed_answers.json").read_text(encoding="utf-8"))
    assert [r["instruction"] for r in mixed] == [r["instruction"] for r in direct]
    assert all(d["output"] in m["output"] for d, m in zip(direct, mixed, strict=True))
    padded = sum(m["output"] != d["output"] for d, m in zip(direct, mixed, strict=True))
    assert 0.35 <= padded / len(mixed) <= 0.65, f"{padded} of {len(mixed)} answers padded"
