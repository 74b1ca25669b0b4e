"""The run folder (docs/evaluation.md): created, resumed when unfinished, never overwritten when finished."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint

from tuneforge.config.schema import RunConfig
from tuneforge.utils.errors import Problem, TuneforgeError

STATE_FILE = "tuneforge_run.json"


class RunExistsError(TuneforgeError):
    """A finished run is in the way."""


@dataclass
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        """The final adapter or model (with tokenizer and chat template)."""
        return self.root / "model"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def last_checkpoint(self) -> str | None:
        """The newest complete checkpoint (staging folders are never picked)."""
        return get_last_checkpoint(str(self.checkpoints)) if self.checkpoints.is_dir() else None

    def state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    @property
    def status(self) -> str | None:
        """running, interrupted, failed or finished; None before the run has started."""
        return self.state().get("status")

    def set_state(self, status: str, **extra: Any) -> None:
        """Record the run status (running, interrupted, failed, finished) atomically."""
        data = {**self.state(), "status": status, "updated": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
        tmp = self.root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, self.root / STATE_FILE)


def run_name(cfg: RunConfig, config_path: str | None) -> str:
    """``output.name``, else the config file's stem, else ``run``."""
    return cfg.output.name or (Path(config_path).stem if config_path else "run")


def open_run(cfg: RunConfig, config_path: str | None, overwrite: bool = False) -> tuple[RunDir, bool]:
    """Create or reopen the run folder.

    Returns:
        The folder and whether an unfinished run is being resumed.

    Raises:
        RunExistsError: the run is finished and neither ``overwrite`` nor ``output.overwrite`` is set.
    """
    run = RunDir(Path(cfg.output.dir) / run_name(cfg, config_path))
    status = run.status
    if status == "finished" and not (overwrite or cfg.output.overwrite):
        raise RunExistsError("this run is finished", [Problem(
            f"{run.root} holds a finished run", field="output.name",
            fix="pass --overwrite to replace it, or choose another output.name")])
    if status == "finished" or (overwrite and run.root.exists()):
        shutil.rmtree(run.root)
        status = None
    run.root.mkdir(parents=True, exist_ok=True)
    last = run.last_checkpoint() if status is not None else None
    if last is None and run.log.exists():
        run.log.unlink()  # an unfinished run without any checkpoint starts over
    elif last is not None:
        trim_log(run.log, int(Path(last).name.rsplit("-", 1)[1]))
    return run, last is not None


def trim_log(log: Path, step: int) -> None:
    """Drop log lines after ``step`` (logged before a kill, they will be logged again after resuming)."""
    if not log.is_file():
        return
    lines = [ln for ln in log.read_text(encoding="utf-8").splitlines()
             if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = log.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    os.replace(tmp, log)
