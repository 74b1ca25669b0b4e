"""Every tuning method on the default model: trainable parameters, real tokens/s, peak RSS and the
validation loss after the same number of steps, each at its advised learning rate.

The train_bench job (default model, alpaca_en_demo.json, max_length 512, batch 4 x accumulation 2,
precision by capability) with 10% of the records held out for validation. Each method runs in its own
subprocess (so peak RSS is its own), ``--repeats`` interleaved rounds, medians. Tokens/s is the median
of the run's logged per-step figures without the first and last step (the evaluation follows the last). ``bitfit`` is listed
for what it says on a model without biases (the default model has none).

Usage: ``python bench/methods_bench.py [--steps 20] [--repeats 2] [--methods lora,ia3@3e-3,...]``
(``name@lr`` sets the learning rate instead of the advice).
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
from train_bench import ACCUM, BATCH, DATA, MAX_LENGTH, RANK, SEED  # noqa: E402

DEFAULT_METHODS = "lora,dora,adalora,ia3,ln_tuning,prompt,ptuning,prefix,adapter,freeze,full,bitfit"


def child(variant: str, steps: int) -> None:
    """Train one method and print its figures as one JSON line."""
    from tuneforge.config.schema import RunConfig
    from tuneforge.training.runner import train
    from tuneforge.utils.errors import TuneforgeError

    name, _, lr = variant.partition("@")
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        cfg = RunConfig.model_validate({
            "data": {"datasets": [str(DATA)], "max_length": MAX_LENGTH, "split": [0.9, 0.1, 0]},
            "method": {"name": name, "lora": {"rank": RANK, "dropout": 0.0}},
            "training": {"max_steps": steps, "learning_rate": float(lr) if lr else None, "batch_size": BATCH,
                         "gradient_accumulation": ACCUM, "eval_steps": steps, "save_steps": 10_000,
                         "logging_steps": 1, "seed": SEED},
            "evaluation": {"forgetting": False, "auto": False},
            "output": {"dir": work, "name": "m"}})
        try:
            result = train(cfg, progress=False, echo=lines.append)
        except TuneforgeError as err:
            print("RESULT " + json.dumps({"error": str(err).splitlines()[0] + ": " + err.problems[0].message}))
            return
        rows = [json.loads(x) for x in result.run.log.read_text().splitlines() if x.strip()]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    trainable = next(x for x in lines if x.startswith("method:")).split("trainable parameters ")[1]
    advised = next((x for x in lines if x.startswith("advice: training.learning_rate")), "")
    # the run's own per-step log (tokens/s of each logged step), the first and the last left out: the first
    # pays warm-up, the last is followed by the evaluation, which is not training
    tps = statistics.median(r["tokens_per_s"] for r in rows if "tokens_per_s" in r and 1 < r["step"] < steps)
    print("RESULT " + json.dumps({"tps": tps, "rss": peak_rss_mb(),
                                  "trainable": trainable, "eval_loss": evals[-1] if evals else None,
                                  "lr": advised.split("= ")[1].split(" ")[0] if advised else lr}))


def _spawn(variant: str, steps: int) -> dict[str, Any]:
    return spawn_child(__file__, variant, "--steps", str(steps))


def main() -> None:
    """Interleave the methods ``--repeats`` times and print one row per method."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps)
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is absent: this bench reads LLaMA-Factory's alpaca_en_demo.json from ../shared")
    methods = args.methods.split(",")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for round_ in range(args.repeats):
        for m in methods:
            runs[m].append(_spawn(m, args.steps))
            print(f"round {round_ + 1} {m}: {runs[m][-1]}", flush=True)
    print(f"\n{args.steps} steps, {args.repeats} interleaved round(s), medians; rank {RANK} for the LoRA family")
    print("| method | learning rate | trainable parameters | real tokens/s | peak RSS | validation loss |")
    print("|---|---|---|---|---|---|")
    fastest = max((statistics.median(r["tps"] for r in rs) for rs in runs.values() if "tps" in rs[0]), default=1)
    for m, rs in runs.items():
        if "error" in rs[0]:
            print(f"| {m} | | refused: {rs[0]['error']} | | | |")
            continue
        tps = statistics.median(r["tps"] for r in rs)
        loss = statistics.median(r["eval_loss"] for r in rs)
        print(f"| {m} | {rs[0]['lr']} | {rs[0]['trainable']} | {tps:.0f} ({tps / fastest:.2f}x) | "
              f"{statistics.median(r['rss'] for r in rs):,.0f} MB | {loss:.4f} |")


if __name__ == "__main__":
    main()
