"""Tracker selection: missing packages reported together, offline unless configured, mlflow's store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuneforge.training import trackers
from tuneforge.utils.errors import ConfigError


@pytest.fixture
def no_tracker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith(("WANDB_", "SWANLAB_", "MLFLOW_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    return tmp_path


def test_every_missing_tracker_package_is_named_before_any_starts(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec",
                        lambda name: None if name in ("wandb", "mlflow") else real(name))
    with pytest.raises(ConfigError) as info:
        trackers.open_trackers(["tensorboard", "wandb", "swanlab", "mlflow"], tmp_path / "r", tmp_path, "p", {})
    assert [p.message.split("package ")[1].split(" ")[0] for p in info.value.problems] == ["'wandb'", "'mlflow'"]
    assert all(p.field == "output.report_to" and "tuneforge[trackers]" in p.fix for p in info.value.problems)
    assert not (tmp_path / "r").exists()  # nothing was opened


def test_wandb_and_swanlab_count_as_configured_only_when_the_user_set_them_up(
        no_tracker_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not trackers._wandb_configured() and not trackers._swanlab_configured()
    (no_tracker_env / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert trackers._wandb_configured()
    (no_tracker_env / ".swanlab").mkdir()
    (no_tracker_env / ".swanlab" / ".netrc").write_text("machine api.swanlab.cn\n  login user\n  password x\n")
    assert trackers._swanlab_configured()
    monkeypatch.setenv("HOME", str(no_tracker_env / "elsewhere"))
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("SWANLAB_API_KEY", "k")
    assert trackers._wandb_configured() and trackers._swanlab_configured()


def test_mlflow_uses_the_user_s_tracking_uri_else_output_dir_mlruns(no_tracker_env: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    default = trackers.MLflow()
    default.start(no_tracker_env / "r", no_tracker_env / "out", "exp", {"method": {"name": "lora"}})
    default.finish(ok=True)
    assert default.uri == f"file:{(no_tracker_env / 'out' / 'mlruns').resolve()}"
    mine = no_tracker_env / "mine"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{mine}")
    chosen = trackers.MLflow()
    chosen.start(no_tracker_env / "r2", no_tracker_env / "out", "exp", {})
    chosen.finish(ok=False)
    client = mlflow.MlflowClient(f"file:{mine}")
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.info.run_name == "r2" and run.info.status == "FAILED"


def test_evaluation_metrics_become_flat_numbers() -> None:
    from types import SimpleNamespace

    evaluation = SimpleNamespace(metrics={"tuned": {"bleu4": 12.5, "judge": None}, "base": {"bleu4": 3}})
    assert trackers.summary_metrics(evaluation) == {"test/tuned/bleu4": 12.5, "test/base/bleu4": 3.0}
    assert trackers.summary_metrics(None) == {}
