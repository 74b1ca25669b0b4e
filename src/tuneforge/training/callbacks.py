"""Callbacks: the JSONL training log, NaN guard, Ctrl-C handling and a rich progress line."""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneforge.utils.errors import Problem, TuneforgeError


class NonFiniteLossError(TuneforgeError):
    """The loss became NaN or infinite."""


class JsonlLogger(TrainerCallback):
    """Append one line per log event to ``train_log.jsonl`` (train and eval), with ppl and tokens/s."""

    def __init__(self, path: Path, trainer_ref: list[Any], metrics: tuple[str, ...] = ()) -> None:
        self.path = path
        self.trainer_ref = trainer_ref  # filled after the trainer exists (it needs the callback first)
        self.metrics = metrics  # a stage's own logged values (rewards/margins, kl, ...), kept as logged
        self._last = (time.perf_counter(), 0)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._last = (time.perf_counter(), self.trainer_ref[0].tokens_total)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs:
            return
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            now, tokens = time.perf_counter(), self.trainer_ref[0].tokens_total
            row.update(loss=logs["loss"], ppl=None if self.metrics else _ppl(logs["loss"]), lr=logs.get("learning_rate"),
                       grad_norm=logs.get("grad_norm"),
                       tokens_per_s=round((tokens - self._last[1]) / max(1e-9, now - self._last[0]), 1))
            self._last = (now, tokens)
        if "eval_loss" in logs:
            row.update(eval_loss=logs["eval_loss"], eval_ppl=None if self.metrics else _ppl(logs["eval_loss"]))
        row.update({k: v for k, v in logs.items() if self._is_stage_metric(k) and isinstance(v, int | float)})
        if len(row) > 2:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


    def _is_stage_metric(self, key: str) -> bool:
        return key.removeprefix("eval_") in self.metrics or (bool(self.metrics) and key.startswith("rewards/"))


class NanGuard(TrainerCallback):
    """Stop at the first non-finite loss without saving (the last good checkpoint stays the latest)."""

    def __init__(self) -> None:
        self.bad_step: int | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        values = [(logs or {}).get(k) for k in ("loss", "grad_norm", "eval_loss")]
        if any(v is not None and not math.isfinite(v) for v in values):
            self.bad_step = state.global_step
            control.should_training_stop = True
            control.should_save = False

    def raise_if_tripped(self, last_checkpoint: str | None) -> None:
        """Turn a tripped guard into a clear error."""
        if self.bad_step is not None:
            raise NonFiniteLossError("the loss became NaN/inf", [Problem(
                f"non-finite loss or gradient at step {self.bad_step}; training stopped, nothing was saved after it "
                f"(last good checkpoint: {last_checkpoint or 'none'})", field="training.learning_rate",
                fix="lower training.learning_rate, check the data for empty or garbled records, or use "
                    "training.precision: fp32")])


class Interrupt(TrainerCallback):
    """First Ctrl-C: save a checkpoint at the end of the current step and stop; second: abort."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from tuneforge.distributed import world

        # ranks may see the signal in different steps; they must stop (and save) in the same one
        if world.any_rank(self.requested):
            self.requested = True
            control.should_save = True
            control.should_training_stop = True


class Progress(TrainerCallback):
    """One rich progress bar: step, loss, tokens/s and ETA."""

    def __init__(self, trainer_ref: list[Any], enabled: bool = True) -> None:
        self.trainer_ref = trainer_ref
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._start = (0.0, 0)
        self._loss = float("nan")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                             TimeRemainingColumn(), transient=False)
        self._bar.start()
        self._task = self._bar.add_task("train", total=state.max_steps, completed=state.global_step, info="")
        self._start = (time.perf_counter(), self.trainer_ref[0].tokens_seen)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self._loss = logs["loss"]

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._bar is None:
            return
        elapsed = max(1e-9, time.perf_counter() - self._start[0])
        tps = (self.trainer_ref[0].tokens_seen - self._start[1]) / elapsed
        self._bar.update(self._task, completed=state.global_step, info=f"loss {self._loss:.4f}  {tps:,.0f} tok/s")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _ppl(loss: float) -> float | None:
    try:
        return round(math.exp(loss), 4)
    except OverflowError:
        return None
