"""Hyper-parameter search: trials as sub-runs, pruning, resume from the SQLite study, best config."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.training.search import run_search, trial_id

pytestmark = pytest.mark.slow
GOOD, BAD = {"training.learning_rate": 5e-3}, {"training.learning_rate": 1e-9}


def _config(tmp_path: Path, model: Path, data: Path, trials: int) -> Path:
    return write_config(tmp_path, model, data, training={"max_steps": 4, "eval_steps": 2, "save_steps": 2},
                        search={"trials": trials, "space": {"training.learning_rate": {"low": 1e-9, "high": 1e-2,
                                                                                       "log": True}},
                                "start_with": [GOOD, BAD, GOOD]})


def test_search_prunes_resumes_and_writes_the_best_config(tmp_path: Path, tiny_model_dir: Path,
                                                          sft_data: Path) -> None:
    cfg_path = _config(tmp_path, tiny_model_dir, sft_data, trials=2)
    first = run_search(load_config(cfg_path), str(cfg_path), echo=lambda m: None, progress=False)
    assert first is not None and [t["state"] for t in first.trials] == ["complete", "pruned"]
    root = tmp_path / "runs" / "r"
    good_run = root / "trials" / f"trial-{trial_id(GOOD)}"
    log_before = (good_run / "train_log.jsonl").read_text()

    cfg_path = _config(tmp_path, tiny_model_dir, sft_data, trials=3)  # the same search, asked for one more trial
    second = run_search(load_config(cfg_path), str(cfg_path), echo=lambda m: None, progress=False)
    assert second is not None and len(second.trials) == 3
    assert [t["state"] for t in second.trials] == ["complete", "pruned", "complete"]
    assert (good_run / "train_log.jsonl").read_text() == log_before  # earlier trials were not retrained
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{root / 'study.db'}")
    assert len(study.trials) == 3
    assert second.best_params == GOOD
    best = yaml.safe_load((root / "best_config.yaml").read_text())
    assert best["training"]["learning_rate"] == 5e-3 and best.get("search") is None
    load_config(str(root / "best_config.yaml"))  # a valid config, ready to train
    assert (root / "plots" / "trials.png").stat().st_size > 1000
    assert "| 1 | pruned |" in (root / "report.md").read_text()


def test_a_trial_left_running_by_a_killed_process_is_run_again(tmp_path: Path, tiny_model_dir: Path,
                                                                sft_data: Path) -> None:
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2, "eval_steps": 2},
                            search={"trials": 1, "space": {"method.lora.rank": {"choices": [2, 4]}}})
    root = tmp_path / "runs" / "r"
    root.mkdir(parents=True)
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{root / 'study.db'}")
    stale = study.ask({"method.lora.rank": optuna.distributions.CategoricalDistribution([2, 4])})  # never told: RUNNING
    result = run_search(load_config(cfg_path), str(cfg_path), echo=lambda m: None, progress=False)
    assert result is not None
    states = {t["trial"]: t["state"] for t in result.trials}
    assert states[stale.number] == "fail" and list(states.values()).count("complete") == 1
    assert result.best_params == stale.params
    assert json.loads((root / "trials" / f"trial-{trial_id(stale.params)}" / "tuneforge_run.json").read_text())[
        "status"] == "finished"


def test_search_space_keys_are_checked(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    from tuneforge.config.load import ConfigError

    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data,
                            search={"space": {"training.learning_rat": {"low": 1e-5, "high": 1e-3}}})
    with pytest.raises(ConfigError, match="search.space"):
        run_search(load_config(cfg_path), str(cfg_path), echo=lambda m: None, progress=False)


def test_search_can_maximise_a_metric_on_the_validation_split(tmp_path: Path, tiny_model_dir: Path,
                                                              sft_data: Path) -> None:
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2, "eval_steps": 2},
                            evaluation={"max_new_tokens": 6, "max_samples": 3},
                            search={"trials": 1, "objective": "rougeL",
                                    "space": {"training.weight_decay": {"low": 0.0, "high": 0.1}}})
    result = run_search(load_config(cfg_path), str(cfg_path), echo=lambda m: None, progress=False)
    assert result is not None and result.trials[0]["state"] == "complete"
    trial_run = Path(result.trials[0]["run"])
    metrics = json.loads((trial_run / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 3 and set(metrics["metrics"]) == {"tuned"}  # the validation split, tuned model only
    assert result.best_value == metrics["metrics"]["tuned"]["rougeL"]
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{result.root / 'study.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
