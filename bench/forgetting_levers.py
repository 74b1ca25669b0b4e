"""The demo's levers against forgetting, measured: identity learned vs the new name leaking into general answers.

Each variant trains examples/identity_lora.yaml with a few overrides (replay ratio, epochs, learning rate,
keep_best) and reads what the run itself measured:

- identity: held-out identity questions (data/identity_eval.json) whose tuned answer gives the name;
- named: general probe answers (the forgetting guard's 60 questions) that give the name;
- leaked: the guard's share of probe answers with training-data signature strings;
- ppl: the guard's general perplexity change; seconds: the whole `tuneforge train`.

Run: .venv/bin/python bench/forgetting_levers.py [--variants NAME ...]   (~7 minutes per variant, 2 cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "identity_lora.yaml"
NAME = "forge"
VARIANTS: dict[str, list[str]] = {
    "shipped": [],
    "replay1.0-ep3": ["data.replay_ratio=1.0", "training.epochs=3"],
    "replay2.0-ep2": ["data.replay_ratio=2.0", "training.epochs=2"],
    "replay1.0-ep3-lr3e-4": ["data.replay_ratio=1.0", "training.epochs=3", "training.learning_rate=3e-4"],
    "replay1.0-ep3-lr7e-4": ["data.replay_ratio=1.0", "training.epochs=3", "training.learning_rate=7e-4"],
    "replay1.0-ep3-lr1e-3": ["data.replay_ratio=1.0", "training.epochs=3", "training.learning_rate=1e-3"],
    "replay1.0-ep3-best": ["data.replay_ratio=1.0", "training.epochs=3", "training.keep_best=true"],
    # most leaks were Chinese probes: a pool with 60 more Chinese prompts (103 of 160 Chinese; their written
    # answers replaced by the base model's own). Measured 2026-12-03: identity 10/10, named 7/60 (shipped then:
    # 8/60), ppl -3.2%, 639 s: no real gain.
    # measured 2026-12-03: identity 0/10 (nothing learned), named 0/60, ppl -19.8%, 518 s
    "attn-r8": ["method.lora.targets=attention", "method.lora.rank=8"],
    # measured 2026-12-03: identity 9/10, named 14/60 (fewer epochs leak more), ppl -16.2%, 419 s
    "replay1.0-ep2": ["data.replay_ratio=1.0", "training.epochs=2"],
    # the base model answers half the Chinese prompts in English or garbled Chinese, so its self-answers leave
    # the identity answers as most of the Chinese text trained on: train 60 short written Chinese answers too
    # Measured 2026-12-03: identity 10/10, named 8/60 (no gain: the leaks became "X 是由 the tuneforge team 开发的"
    # inside proper Chinese), ppl -38.6% (the written answers teach Chinese), 681 s.
    "zh-written-ep3": ["data.datasets=[identity,data/general_qa_zh.json]", "data.replay_ratio=0.6"],
    "zh-pool-1.3": ["data.replay=[data/general_prompts.json,data/general_qa_zh.json]", "data.replay_ratio=1.3"],
}


def measure(name: str, overrides: list[str], out: Path) -> dict[str, object]:
    """Train one variant into ``out/name`` and read its evaluation and forgetting files."""
    cmd = [str(ROOT / ".venv" / "bin" / "tuneforge"), "train", str(CONFIG), "--overwrite", "--no-progress",
           f"output.dir={out}", f"output.name={name}", *overrides]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    run = out / name
    rows = [json.loads(x) for x in (run / "eval" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    guard = json.loads((run / "eval" / "forgetting.json").read_text(encoding="utf-8"))
    return {"variant": name, "overrides": " ".join(overrides) or "(as shipped)",
            "identity": f"{sum(NAME in r['tuned_answer'].lower() for r in rows)}/{len(rows)}",
            "named": f"{sum(NAME in r['tuned'].lower() for r in guard['answers'])}/{guard['probes']}",
            "leaked": f"{guard['leaked']:.0%}", "changed": f"{guard['changed']:.0%}",
            "ppl": f"{guard['ppl']['base']:.2f} -> {guard['ppl']['tuned']:.2f} ({guard['ppl']['change']:+.1%})",
            "seconds": round(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuneforge-levers"))
    args = parser.parse_args()
    results = []
    for name in args.variants:
        results.append(measure(name, VARIANTS[name], args.out))
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    print("\n| variant | overrides | identity | named | leaked | changed | general ppl | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['overrides']} | {r['identity']} | {r['named']} | {r['leaked']} | {r['changed']} "
              f"| {r['ppl']} | {r['seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
