"""Where one training step's time goes: torch profiler over one optimizer step of the train_bench job.

tuneforge's own path (``tuneforge.training.runner.train``) on the default model, alpaca_en_demo.json,
LoRA r8 all-linear, max_length 512, batch 4 x accumulation 2, precision chosen by capability. Steps
before ``--step`` warm up (kernel selection, allocator); the profiler records that one step (its
micro-batches, backward and optimizer update). Prints the top operators by self CPU time and a
summary by kind (matmul, attention, loss, elementwise, optimizer, other) as shares of the step.

Usage: ``python bench/profile_step.py [--step 3] [--top 20] [--shapes]``
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_bench import ACCUM, BATCH, DATA, LR, MAX_LENGTH, RANK, SEED  # noqa: E402

#: operator name fragments -> kind (first match wins; names are aten's)
KINDS = {
    "matmul": ("mm", "addmm", "bmm", "matmul", "linear"),
    "attention": ("scaled_dot_product", "_flash_attention", "attention"),
    "loss": ("cross_entropy", "log_softmax", "nll_loss", "_softmax"),
    "optimizer": ("_foreach", "adam", "addcdiv", "lerp"),
    "elementwise": ("mul", "add", "silu", "rsqrt", "pow", "mean", "neg", "cat", "copy_", "to", "sigmoid", "where",
                    "div", "sub", "fill", "zero", "clone", "index", "embedding", "gather", "scatter", "sum"),
}


def _kind(name: str) -> str:
    op = name.removeprefix("aten::")
    for kind, parts in KINDS.items():
        if any(op == p or op.startswith(p + "_") or op.startswith("_" + p) or p in op.split("_") for p in parts):
            return kind
    return "other"


def _profiler_callback(step: int, shapes: bool = False) -> Any:
    import torch
    from transformers import TrainerCallback

    class Profile(TrainerCallback):
        """Starts the profiler when optimizer step ``step`` begins and stops it when it ends."""

        def __init__(self) -> None:
            self.prof: Any = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == step - 1:
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                   record_shapes=shapes)
                self.prof.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.prof is not None and state.global_step == step:
                self.prof.__exit__(None, None, None)
                control.should_training_stop = True

    return Profile()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--step", type=int, default=3)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--shapes", action="store_true", help="also the top operators by input shape")
    a = p.parse_args()
    from tuneforge.config.schema import RunConfig
    from tuneforge.training.runner import train

    profile = _profiler_callback(a.step, a.shapes)
    with tempfile.TemporaryDirectory() as work:
        cfg = RunConfig.model_validate({
            "data": {"datasets": [str(DATA)], "max_length": MAX_LENGTH, "split": [1, 0, 0]},
            "method": {"name": "lora", "lora": {"rank": RANK, "alpha": 2 * RANK, "dropout": 0.0}},
            "training": {"max_steps": a.step + 1, "learning_rate": LR, "batch_size": BATCH,
                         "gradient_accumulation": ACCUM, "logging_steps": 1, "save_steps": 10_000, "seed": SEED},
            "evaluation": {"forgetting": False, "auto": False},
            "output": {"dir": work, "name": "profile"}})
        train(cfg, progress=False, echo=lambda m: None, callbacks=[profile])
    events = profile.prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"# one optimizer step ({ACCUM} micro-batches of {BATCH}), self CPU time {total / 1e3:.0f} ms in all")
    print(events.table(sort_by="self_cpu_time_total", row_limit=a.top))
    if a.shapes:
        by_shape = profile.prof.key_averages(group_by_input_shape=True)
        print(by_shape.table(sort_by="self_cpu_time_total", row_limit=a.top, max_name_column_width=40,
                             max_shapes_column_width=70))
    kinds: collections.Counter[str] = collections.Counter()
    for e in events:
        kinds[_kind(e.key)] += e.self_cpu_time_total
    for kind, us in kinds.most_common():
        print(f"{kind}: {us / 1e3:.0f} ms ({100 * us / total:.0f}%)")


if __name__ == "__main__":
    main()
