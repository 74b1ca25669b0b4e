"""LLaMA-Factory's contender for bench/train_bench.py, run by the .venv-lf interpreter (bench/setup_llamafactory.sh).

LF trains with its defaults (gradient checkpointing on, its own collator, its ``smollm2`` template) on the
same alpaca records, with the bench's LoRA, batch, accumulation, steps, learning rate, schedule and seed;
precision is what the bench chose for every contender on this machine (``--precision``). A callback
times ``trainer.train`` from its first to its last event, and the real (attention-mask) tokens of the
micro-batches trained on are counted, like the other contenders'. Prints one ``RESULT {json}`` line. Imports nothing
from tuneforge: that is not installed in LF's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, trainer_settings  # noqa: E402


def _callback(trained_batches: int) -> Any:
    """A callback that times training; it also counts the real tokens of every micro-batch trained on.

    The counting wraps ``Trainer.training_step`` (class level, inherited by LF's trainer): the batches
    are only visible there, because accelerate rebuilds the dataloader, so wrapping the collator seen by
    a callback counts nothing.
    """
    from transformers import Trainer, TrainerCallback

    class Measure(TrainerCallback):
        """Times ``trainer.train`` from its first to its last event and holds the counted tokens."""

        def __init__(self) -> None:
            self.counts: list[int] = []
            self.start = self.seconds = 0.0
            self.losses: list[float] = []
            self.settings: dict[str, Any] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.settings = trainer_settings(args, kwargs["model"])
            self.start = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds = time.perf_counter() - self.start
            self.losses = [h["loss"] for h in state.log_history if "loss" in h]

        @property
        def tokens(self) -> int:
            return sum(self.counts[:trained_batches])

    measure = Measure()
    step = Trainer.training_step

    def counted(self: Any, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        measure.counts.append(int(inputs["attention_mask"].bool().sum()))
        return step(self, model, inputs, *args, **kwargs)

    Trainer.training_step = counted
    return measure


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("model", "data", "precision"):
        p.add_argument(f"--{name}", required=True)
    for name in ("steps", "batch", "accum", "max-length", "rank", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    a = p.parse_args()
    import torch
    from llamafactory.train.tuner import run_exp

    measure = _callback(a.steps * a.accum)
    with tempfile.TemporaryDirectory() as work:
        Path(work, "dataset_info.json").write_text(json.dumps({"bench": {"file_name": str(Path(a.data).resolve())}}))
        run_exp(args={
            "model_name_or_path": a.model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
            "lora_rank": a.rank, "lora_alpha": 2 * a.rank, "lora_dropout": 0.0, "lora_target": "all",
            "dataset": "bench", "dataset_dir": work, "template": "smollm2", "cutoff_len": a.max_length,
            "per_device_train_batch_size": a.batch, "gradient_accumulation_steps": a.accum,
            "learning_rate": a.lr, "max_steps": a.steps, "lr_scheduler_type": "linear", "warmup_steps": 0,
            "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": a.seed,
            "output_dir": str(Path(work, "out")), "overwrite_output_dir": True, "plot_loss": False,
            "bf16": a.precision == "bf16", "fp16": a.precision == "fp16", "use_cpu": not torch.cuda.is_available(),
            "disable_tqdm": True},
            callbacks=[measure])
    final = measure.losses[-1] if measure.losses else None
    print("RESULT " + json.dumps({"tokens": measure.tokens, "seconds": measure.seconds, "final_loss": final,
                                  "losses": measure.losses, "settings": measure.settings,
                                  "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
