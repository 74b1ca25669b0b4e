"""output.report_to: every tracker runs offline and receives the config, the losses and the evaluation.

Each is read back from what it wrote: tensorboard's event files, wandb's and swanlab's offline run files
(both are LevelDB-style logs of protobuf records), mlflow's local store through its client.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow
STEPS = 4


def _log_records(path: Path) -> list[bytes]:
    """The records of a wandb/swanlab run file: a 7-byte header, then LevelDB log blocks of 32 KiB whose
    records (crc 4, length 2, type 1) are whole (1) or split into first (2), middle (3) and last (4) pieces.
    (wandb 0.31 ships no Python reader; its run file is read by its Go core.)"""
    data, block, head = path.read_bytes(), 32768, 7
    out, pos, part = [], head, b""
    while pos + head <= len(data):
        if block - pos % block < head:  # the tail of a block too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + head])
        if kind == 0:
            break
        chunk = data[pos + head:pos + head + length]
        pos += head + length
        part = chunk if kind in (1, 2) else part + chunk
        if kind in (1, 4):
            out.append(part)
    return out


def _wandb(output: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(config, history rows, last summary values) of the one offline wandb run."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = output.glob("wandb/offline-run-*/run-*.wandb")
    config, history, summary = {}, [], {}
    for raw in _log_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return config, history, summary


def _swanlab(output: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """(config.yaml text, scalar key -> [(step, value)]) of the one offline swanlab run."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record

    (run,) = output.glob("swanlog/run-*")
    scalars: dict[str, list[tuple[int, float]]] = {}
    for raw in _log_records(next(run.glob("run-*.swanlab"))):
        record = Record()
        record.ParseFromString(raw)
        if record.HasField("scalar"):
            s = record.scalar
            scalars.setdefault(s.key, []).append((s.step, s.value.number))
    return (run / "files" / "config.yaml").read_text(encoding="utf-8"), scalars


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No tracker configured: no modes, keys or URIs in the environment, no saved logins."""
    import os

    for key in list(os.environ):
        if key.startswith(("WANDB_", "SWANLAB_", "MLFLOW_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NETRC", raising=False)


def test_every_tracker_receives_config_losses_and_evaluation(tmp_path: Path, tiny_model_dir: Path, sft_data: Path,
                                                             clean_env: None) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = write_config(tmp_path, tiny_model_dir, sft_data, data={"split": [0.7, 0.15, 0.15]},
                       training={"max_steps": STEPS, "eval_steps": 2, "save_steps": 2},
                       evaluation={"max_new_tokens": 4, "metrics": ["bleu4", "rouge"]},
                       output={"report_to": ["tensorboard", "wandb", "swanlab", "mlflow"], "project": "tf-test"})
    lines: list[str] = []
    result = train(load_config(cfg), str(cfg), progress=False, echo=lines.append)
    output = tmp_path / "runs"
    assert sum(line.startswith("tracker ") for line in lines) == 4, lines

    # tensorboard: the losses, the evaluation's metrics and the resolved config
    assert len(list((result.run.root / "tensorboard").glob("events.*"))) == 1  # the summary joins the training file
    events = EventAccumulator(str(result.run.root / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, STEPS + 1))
    assert [e.step for e in events.Scalars("eval/loss")] == [2, 4]
    assert any(tag.startswith("test/tuned/") for tag in events.Tags()["scalars"]), events.Tags()["scalars"]
    config_text = events.Tensors("tuneforge_config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "report_to:" in config_text and "name: lora" in config_text

    # wandb, offline: config, every step's loss, the validation loss and the evaluation summary
    config, history, summary = _wandb(output)
    assert config["tuneforge"]["method"]["name"] == "lora"
    assert config["tuneforge"]["output"]["project"] == "tf-test"
    assert [row["train/global_step"] for row in history if "train/loss" in row] == list(range(1, STEPS + 1))
    assert sum("eval/loss" in row for row in history) == 2
    assert any(key.startswith("test/tuned/") for key in summary), sorted(summary)

    # swanlab, offline
    config_yaml, scalars = _swanlab(output)
    assert "tuneforge" in config_yaml and "lora" in config_yaml
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, STEPS + 1))
    assert len(scalars["eval/loss"]) == 2
    assert any(key.startswith("test/tuned/") for key in scalars)

    # mlflow: the local store under output.dir/mlruns
    import mlflow

    client = mlflow.MlflowClient(f"file:{(output / 'mlruns').resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("tf-test").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert run.data.params["tuneforge.method.name"] == "lora"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, STEPS + 1))
    assert len(client.get_metric_history(run.info.run_id, "eval_loss")) == 2
    assert any(key.startswith("test/tuned/") for key in run.data.metrics), sorted(run.data.metrics)
