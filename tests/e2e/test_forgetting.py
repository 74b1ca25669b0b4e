"""After training: the forgetting guard, the loud truncation warning and keeping the best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import write_json
from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow
#: 40 identity answers; every 8th is too long for max_length 128 (12% truncated, above the 5% threshold).
IDENTITY = [{"instruction": f"Who are you, friend number {k}?",
             "output": "I am Forge, made by the tuneforge team. " + "Happy to help. " * (40 if k % 8 == 0 else 0)}
            for k in range(40)]
#: Held-out answers unlike the training ones: the validation loss has a best step before the last.
COOKING = [{"instruction": f"Question {k} about cooking?", "output": "Boil the pasta for ten minutes in salted water."}
           for k in range(8)]


@pytest.mark.ci  # ~15 s: kept out of `make test` (15-minute budget); `.ci/run` runs it with `make test-ci`
def test_guard_truncation_warning_and_best_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    data, held_out = write_json(tmp_path / "id.json", IDENTITY), write_json(tmp_path / "ev.json", COOKING)
    cfg = write_config(tmp_path, tiny_model_dir, data, data={"eval_datasets": [str(held_out)]},
                       training={"max_steps": 12, "eval_steps": 2, "save_steps": 2, "keep_best": True,
                                 "learning_rate": 1e-2}, evaluation={"forgetting": True})
    said: list[str] = []
    result = train(load_config(cfg), str(cfg), progress=False, echo=said.append)
    root = result.run.root

    # truncation: the same warning on the console, in data_report.json and in report.md
    warning = json.loads((root / "data_report.json").read_text())["warnings"][0]
    assert warning["message"].startswith("5 of 40 examples (12%)") and "data.max_length: " in warning["fix"]
    report = (root / "report.md").read_text()
    assert any(warning["message"] in line for line in said) and warning["message"] in report

    # the guard: base vs tuned on the shipped probes, in eval/forgetting.json, report.md and the console
    guard = json.loads((root / "eval" / "forgetting.json").read_text())
    assert guard["probes"] == 60 and len(guard["answers"]) == 60
    assert guard["ppl"]["base"] > 1 and guard["ppl"]["tuned"] > 1
    assert "forge" in guard["signatures"] and "tuneforge" in guard["signatures"]
    assert [line for line in said if line.startswith("forgetting: general perplexity")]
    assert "## Forgetting" in report and (root / "eval" / "forgetting_base.json").is_file()

    # keep_best: the saved adapter is the checkpoint with the lowest validation loss
    rows = [json.loads(x) for x in (root / "train_log.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}
    best = min(evals, key=evals.get)
    final = load_file(root / "model" / "adapter_model.safetensors")
    kept = {int(p.name.split("-")[1]): load_file(p / "adapter_model.safetensors")
            for p in (root / "checkpoints").glob("checkpoint-*")}
    assert best in kept  # rotation never deletes the best checkpoint
    for step, weights in kept.items():
        same = all(torch.equal(weights[k], final[k]) for k in final)
        assert same == (step == best), (step, best, evals)


def test_guard_can_be_turned_off(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_json(tmp_path / "id.json", IDENTITY[1:8])
    cfg = write_config(tmp_path, tiny_model_dir, data, training={"max_steps": 2}, data={"max_length": 256},
                       evaluation={"forgetting": False})
    result = train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)
    assert not (result.run.root / "eval" / "forgetting.json").exists()
    assert "## Forgetting" not in (result.run.root / "report.md").read_text()
    assert json.loads((result.run.root / "data_report.json").read_text())["warnings"] == []
