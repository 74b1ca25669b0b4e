"""Multi-stage training: the second stage starts from the first, replays its data, halves the learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_json
from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.training.multistage import train_stages

pytestmark = pytest.mark.slow


def test_two_stages(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    second = write_json(tmp_path / "second.json", [{"instruction": f"Say {w}", "output": w} for w in
                                                   ("red", "green", "blue", "cyan", "pink", "gold", "gray", "teal")])
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 3, "learning_rate": 4e-3})
    raw = yaml.safe_load(cfg_path.read_text())
    raw["stages"] = [{"name": "short", "data": {"max_length": 64}},
                     {"name": "colours", "data": {"datasets": [str(second)]}, "training": {"learning_rate": None},
                      "replay_ratio": 0.5}]
    cfg_path.write_text(yaml.safe_dump(raw))
    results = train_stages(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)
    first, last = (r.run.root for r in results)
    assert first.name == "01-short" and last.name == "02-colours"
    lr1 = yaml.safe_load((first / "config.yaml").read_text())["training"]["learning_rate"]
    resolved2 = yaml.safe_load((last / "config.yaml").read_text())
    assert resolved2["training"]["learning_rate"] == pytest.approx(lr1 / 2)
    assert resolved2["model"]["name_or_path"] == str(first / "merged")  # started from stage 1's merged result
    report2 = json.loads((last / "data_report.json").read_text())
    assert report2["examples"]["replay"] >= 1  # earlier-stage data mixed in
    assert (first.parent / "report.md").read_text().count("plots/loss.png") == 2
    again = train_stages(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)
    assert [r.run.root for r in again] == [first, last]  # finished stages are kept, not retrained


def test_sft_then_rm_then_ppo_and_sft_then_dpo(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    from tests.e2e.test_alignment import PAIRS, QA

    pairs = write_json(tmp_path / "pairs.json", PAIRS)
    prompts = write_json(tmp_path / "prompts.json", QA)
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2, "save_steps": 2})
    raw = yaml.safe_load(cfg_path.read_text())
    raw["stages"] = [{"name": "sft"},
                     {"name": "rm", "data": {"datasets": [str(pairs)]}, "training": {"stage": "rm"}},
                     {"name": "ppo", "data": {"datasets": [str(prompts)]}, "training": {"stage": "ppo"},
                      "alignment": {"max_new_tokens": 6}},
                     {"name": "dpo", "data": {"datasets": [str(pairs)]}, "training": {"stage": "dpo"}}]
    cfg_path.write_text(yaml.safe_dump(raw))
    sft, rm, ppo, dpo = (r.run.root for r in train_stages(load_config(cfg_path), str(cfg_path), progress=False,
                                                          echo=lambda m: None))
    resolved = {p.name: yaml.safe_load((p / "config.yaml").read_text()) for p in (rm, ppo, dpo)}
    assert resolved["02-rm"]["model"]["name_or_path"] == str(sft / "merged")  # the reward model starts from SFT
    assert resolved["03-ppo"]["model"]["name_or_path"] == str(sft / "merged")  # the policy is SFT's, not the RM
    assert resolved["03-ppo"]["alignment"]["reward_model"] == str(rm)  # the latest rm stage, filled in
    assert resolved["04-dpo"]["model"]["name_or_path"] == str(ppo / "merged")
    lr_sft = yaml.safe_load((sft / "config.yaml").read_text())["training"]["learning_rate"]
    assert resolved["04-dpo"]["training"]["learning_rate"] != pytest.approx(lr_sft / 2)  # advice, not inherited
    assert json.loads((dpo / "data_report.json").read_text())["examples"]["replay"] == 0  # no SFT rows in DPO
    for run in (rm, ppo, dpo):
        assert (run / "model" / "tuneforge_training.json").is_file()
