"""Helpers for end-to-end runs on tiny random models."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import write_json

QA = [{"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}."}
      for a in range(8) for b in range(5)]


@pytest.fixture()
def sft_data(tmp_path: Path) -> Path:
    return write_json(tmp_path / "qa.json", QA)


def write_config(tmp_path: Path, model: Path, data_path: Path, **sections: dict[str, Any]) -> Path:
    """A run config for a tiny model: few steps, deterministic, everything under tmp_path."""
    cfg: dict[str, Any] = {
        "model": {"name_or_path": str(model)},
        "data": {"datasets": [str(data_path)], "max_length": 128, "split": [0.8, 0.2, 0.0]},
        "method": {"name": "lora", "lora": {"rank": 4, "dropout": 0.0}},
        "training": {"max_steps": 8, "learning_rate": 5e-3, "batch_size": 4, "gradient_accumulation": 1,
                     "logging_steps": 1, "eval_steps": 4, "save_steps": 4, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "runs"), "name": "r"},
        # the guard generates 2 x 60 probe answers (seconds per run): tests/e2e/test_forgetting.py covers it
        "evaluation": {"forgetting": False},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def varied(model: Any, seed: int = 0) -> Any:
    """Re-draw a tiny model's matrices with a larger spread: its default init answers "\n" to every
    prompt, which would make text comparisons vacuous; these give varied, prompt-dependent answers."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.2)
    return model


@pytest.fixture(scope="module")
def varied_engine(tiny_model_dir: Path) -> Any:
    """The tiny model with varied random weights (see ``varied``), loaded for inference; one per module."""
    from tuneforge.inference.engine import Engine

    loaded = Engine.load(str(tiny_model_dir))
    varied(loaded.model)
    return loaded
