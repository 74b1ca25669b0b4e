"""Distributed training on this machine: tokens/s and peak memory per process, 1 process vs 2.

Contenders, each a real ``tuneforge train`` of the default model (SmolLM2-135M-Instruct) with LoRA rank 8
on the repository's identity data, the same global batch (4 examples per optimizer step: 1 process x 4,
or 2 processes x 2), the same steps, seed and precision (``auto``: what the machine does best, printed):

- ``none``: one process, every core;
- ``ddp``, ``fsdp`` (FSDP2 full_shard), ``deepspeed-2``, ``deepspeed-3``: two processes, half the cores each.

Each contender runs in its own subprocess (its workers are that subprocess's children, so their peak
RSS is read from ``RUSAGE_CHILDREN``); ``--repeats`` interleaves the contenders and reports medians.
Prints, per contender: global tokens/s (median of the logged steps after the first), tokens/s per
process, peak RSS of the largest process, and the ratios against the fastest contender and against
one process (the scaling ratio). On a 2-core CPU two processes share the same cores: these runs show
that the strategies work and what they cost there; sharded strategies (FSDP, ZeRO-3) gather every layer's
weights over gloo twice a step, which a CPU pays dearly for. ``make bench-dist`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "identity.json"
CONTENDERS = {"none": [], "ddp": ["distributed.strategy=ddp"], "fsdp": ["distributed.strategy=fsdp"],
              "deepspeed-2": ["distributed.strategy=deepspeed", "distributed.zero_stage=2"],
              "deepspeed-3": ["distributed.strategy=deepspeed", "distributed.zero_stage=3"]}
GLOBAL_BATCH, MAX_LENGTH = 4, 256


def _config(work: Path, steps: int) -> Path:
    cfg = (f"data: {{datasets: [{DATA}], max_length: {MAX_LENGTH}, split: [1, 0, 0], "
           "placeholders: {name: Forge, author: Acme}}\n"
           "method: {name: lora, lora: {rank: 8, dropout: 0.0}}\n"
           f"training: {{max_steps: {steps}, learning_rate: 2.0e-4, gradient_accumulation: 1, logging_steps: 1, "
           f"save_steps: {steps}, warmup_ratio: 0.0}}\n"
           "evaluation: {auto: false}\n"
           f"output: {{dir: {work / 'runs'}}}\n")
    path = work / "bench.yaml"
    path.write_text(cfg, encoding="utf-8")
    return path


def run_one(name: str, steps: int) -> dict[str, Any]:
    """One contender in a fresh subprocess tree; called through ``--one NAME``."""
    procs = 1 if name == "none" else 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cmd = [sys.executable, "-m", "tuneforge.cli.main", "train", str(_config(work, steps)), f"output.name={name}",
               f"training.batch_size={GLOBAL_BATCH // procs}", *CONTENDERS[name],
               *([f"distributed.nproc_per_node={procs}"] if procs > 1 else []), "--no-progress"]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            return {"name": name, "error": (done.stdout + done.stderr)[-2000:]}
        rows = [json.loads(x) for x in (work / "runs" / name / "train_log.jsonl").read_text().splitlines() if x]
        precision = next((ln.split(":", 1)[1].split("(")[0].strip() for ln in done.stdout.splitlines()
                          if ln.startswith("precision:")), "?")
    speeds = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r][1:]  # the first step includes warm-up
    return {"name": name, "processes": procs, "tokens_per_s": statistics.median(speeds),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "precision": precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(CONTENDERS), help="contenders to run")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps)))
        return
    print(f"model: default (SmolLM2-135M-Instruct), LoRA r8, data {DATA.name}, max_length {MAX_LENGTH}, global batch "
          f"{GLOBAL_BATCH}, {args.steps} steps, precision auto, {os.cpu_count()} cores, repeats {args.repeats} "
          "(interleaved)")
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in args.only}
    for _ in range(args.repeats):
        for name in args.only:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps)],
                                 capture_output=True, text=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    _print(results)


def _print(results: dict[str, list[dict[str, Any]]]) -> None:
    table = {}
    for name, runs in results.items():
        good = [r for r in runs if "error" not in r]
        if not good:
            print(f"{name}: failed\n{runs[0]['error']}")
            continue
        table[name] = {"processes": good[0]["processes"], "precision": good[0]["precision"],
                       "tps": statistics.median(r["tokens_per_s"] for r in good),
                       "rss": statistics.median(r["peak_rss_mb"] for r in good)}
    if not table:
        return
    best = max(v["tps"] for v in table.values())
    single = table.get("none", {}).get("tps")
    print(f"{'contender':<12} {'procs':>5} {'tokens/s':>9} {'per proc':>9} {'peak RSS MB':>11} {'vs best':>8} "
          f"{'scaling':>8}  precision")
    for name, v in table.items():
        scaling = f"{v['tps'] / single:.2f}" if single else "-"
        print(f"{name:<12} {v['processes']:>5} {v['tps']:>9.0f} {v['tps'] / v['processes']:>9.0f} {v['rss']:>11.0f} "
              f"{v['tps'] / best:>8.2f} {scaling:>8}  {v['precision']}")
    if any(n.startswith("deepspeed") for n in table) and any(v["precision"].startswith("bf16") for v in table.values()):
        print("note: with bf16, DeepSpeed holds the model in bf16 (fp32 master weights in its optimizer); the others "
              "keep fp32 weights and autocast to bf16: the same precision setting, not the same arithmetic")
    for name, v in table.items():
        if name != "none" and single:
            print(f"scaling ratio {name} (2 processes) / 1 process: {v['tps'] / single:.2f}")


if __name__ == "__main__":
    main()
