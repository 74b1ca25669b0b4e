"""CPU training levers on the train_bench job, measured against each other in one invocation.

tuneforge's own path (``bench/train_bench.py``'s job: default model, alpaca_en_demo.json, LoRA r8
all-linear, max_length 512, batch 4 x accumulation 2, precision by capability), each variant in its own
subprocess, ``--repeats`` interleaved rounds, medians of real tokens/s and peak RSS:

- ``pieces=N``: ``training.cpu_piece_tokens: N``, a padding-free row on CPU runs as right-padded causal
  batches of at most N padded tokens (1 = one sequence at a time, the least memory);
- ``threads=N``: ``training.threads: N`` (torch's intra-op threads) with the default piece size;
- ``frozen=auto|fp32``: ``training.frozen_precision``: the frozen base in the compute precision (auto) or
  an fp32 copy cast by autocast at every matmul (fp32); the same on a CPU without bf16, where both are fp32;
- ``alloc=heap|default``: ``training.cpu_allocator``: glibc told (``mallopt``) to serve large blocks from
  its heap and keep freed memory (heap, what auto picks on a CPU under glibc), or glibc as it is, where
  every block over its threshold is a fresh ``mmap`` that page-faults on first touch (default).

Usage: ``python bench/cpu_levers.py [--steps 5] [--repeats 2] [--precision auto] [--variants pieces=1,...]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, spawn_child  # noqa: E402
from train_bench import DATA, run_tuneforge  # noqa: E402

DEFAULT_VARIANTS = "pieces=1,pieces=512,pieces=1024,pieces=2048,pieces=4096"
KEYS = {"pieces": "cpu_piece_tokens", "threads": "threads", "frozen": "frozen_precision", "alloc": "cpu_allocator"}  # variant -> training key


def child(variant: str, steps: int, precision: str) -> None:
    """Run the job under one variant and print its figures as one JSON line."""
    import torch

    from tuneforge.training.precision import choose_precision

    key, value = variant.split("=")
    training = {KEYS[key]: int(value) if value.isdigit() else value}
    with tempfile.TemporaryDirectory() as work:
        out = run_tuneforge(DATA, steps, work, choose_precision(precision).name, training=training)
    print("RESULT " + json.dumps({"tps": out["tokens"] / out["seconds"], "loss": out["final_loss"],
                                  "rss": peak_rss_mb(), "threads": torch.get_num_threads()}))


def _spawn(variant: str, steps: int, precision: str) -> dict[str, Any]:
    return spawn_child(__file__, variant, "--steps", str(steps), "--precision", precision)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variants", default=DEFAULT_VARIANTS)
    p.add_argument("--precision", default="auto", help="auto (by capability) or fp32/bf16 for every variant")
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        child(a.child, a.steps, a.precision)
        return
    variants = a.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(a.repeats):
        for v in variants:  # interleaved
            runs[v].append(_spawn(v, a.steps, a.precision))
    first = variants[0]
    base = statistics.median(r["tps"] for r in runs[first])
    print(f"# {a.steps} steps, {a.repeats} interleaved repeats, precision {a.precision}, medians; "
          f"ratios against {first}")
    for v, rs in runs.items():
        tps = statistics.median(r["tps"] for r in rs)
        print(f"{v}: {tps:.0f} real tokens/s ({tps / base:.2f}x), peak RSS {statistics.median(r['rss'] for r in rs):.0f}"
              f" MB, final loss {rs[-1]['loss']:.4f}, threads {rs[-1]['threads']}")


if __name__ == "__main__":
    main()
