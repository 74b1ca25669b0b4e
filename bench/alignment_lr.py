"""Learning-rate sweep of an alignment example: the held-out metric it claims, per learning rate.

The advice's preference and RL learning rates (docs/advice.md) come from this measurement, not from a rule
of thumb. Each rate trains the example as written (forgetting guard off, it does not change the metric)
into a scratch folder and reads its held-out eval/metrics.json.

Run: .venv/bin/python bench/alignment_lr.py examples/dpo_lora.yaml [key=value ...] --lrs 2e-5 6e-5 2e-4
(overrides go before --lrs, which takes every number after it)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from examples_bench import CLAIMS  # noqa: E402  (bench scripts share their table of claims)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--lrs", nargs="+", type=float, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuneforge-lr"))
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    print("| learning rate | metric | base | tuned | steps | seconds |\n|---|---|---|---|---|---|", flush=True)
    for lr in args.lrs:
        name = f"{args.config.stem}-lr{lr:g}"
        cmd = [str(ROOT / ".venv" / "bin" / "tuneforge"), "train", str(args.config), "--overwrite", "--no-progress",
               f"output.dir={args.out}", f"output.name={name}", f"training.learning_rate={lr}",
               "evaluation.forgetting=false", *args.overrides]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        run = args.out / name
        summary = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
        state = json.loads((run / "tuneforge_run.json").read_text(encoding="utf-8"))
        for key in CLAIMS[summary["stage"]]:
            m = summary["metrics"]
            print(f"| {lr:g} | {key} | {m['base'].get(key):.3f} | {m['tuned'].get(key):.3f} | {state.get('step')} "
                  f"| {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
