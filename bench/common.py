"""Helpers shared by the bench scripts (standard library only: bench/lf_child.py imports it in LF's venv)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM), in MB.

    Not ``getrusage``: on Linux its ``ru_maxrss`` survives ``exec`` and so reports the parent's peak
    when the parent was bigger, which made two contenders read the same figure.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: no exec carry-over known


def trainer_settings(args: Any, model: Any, precision: str | None = None) -> dict[str, Any]:
    """A contender's precision, gradient checkpointing and LoRA dropout, read back from what it trained.

    ``args`` are its ``TrainingArguments`` (``precision`` instead where it has none), ``model`` its peft model.
    """
    if precision is None:
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    lora = next(iter(model.peft_config.values()))
    frozen = next(p for p in model.parameters() if not p.requires_grad)
    return {"precision": precision, "gradient_checkpointing": bool(model.is_gradient_checkpointing),
            "lora_dropout": float(lora.lora_dropout), "base_weights": str(frozen.dtype).removeprefix("torch.")}


def result_line(stdout: str) -> dict[str, Any] | None:
    """The ``RESULT {json}`` line a bench child printed, parsed; None when it printed none."""
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    return None if line is None else json.loads(line[len("RESULT "):])


def spawn_child(script: str, variant: str, *args: str) -> dict[str, Any]:
    """Run ``script --child variant *args`` in a fresh interpreter and return its RESULT line (exit if none)."""
    done = subprocess.run([sys.executable, script, "--child", variant, *args], capture_output=True, text=True)
    result = result_line(done.stdout)
    if result is None:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return result
