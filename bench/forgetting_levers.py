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
#: Each variant with what it measured on 2026-12-03 (identity of 10, general answers naming "Forge" of 60, general
#: perplexity change, seconds), all with the shipped settings besides the overrides.
VARIANTS: dict[str, list[str]] = {
    # Until 2026-12-03 every identity answer gave the name, even to "thank you", "good morning" or "what can you
    # do?", which teaches "always say the name"; the figures below up to "zh-written" are with that file. Since,
    # 22 of the 90 answers (11 per language) answer those without it ("shipped" now): 10/10, 7/60 (every leak a
    # Chinese answer, none English), -12.6%, 484 s; before: 10/10, 8/60, -8.0%, ~500-580 s.
    "shipped": [],  # replay 1.0, 3 epochs, 5e-4
    "replay0.25-ep5": ["data.replay_ratio=0.25", "training.epochs=5"],  # 10/10, 14/60, -20.0%
    "replay2.0-ep2": ["data.replay_ratio=2.0", "training.epochs=2"],  # 10/10, 8/60, +5.9%
    "replay1.0-ep2": ["training.epochs=2"],  # 9/10, 14/60, -16.2%, 419 s: fewer epochs leak more
    "replay1.0-ep4": ["training.epochs=4"],  # new identity data: 10/10, 8/60, -1.5%, 887 s (fp32: a CPU without bf16): 2 -> 3 epochs helped, 4 did not
    "lr3e-4": ["training.learning_rate=3e-4"],  # 9/10, 11/60, -13.4%
    "lr7e-4": ["training.learning_rate=7e-4"],  # 10/10, 9/60, -3.8%
    "attn-r8": ["method.lora.targets=attention", "method.lora.rank=8"],  # 0/10 (learns nothing), 0/60, -19.8%
    "rank4": ["method.lora.rank=4"],  # all linear layers, a quarter of the capacity: 1/10 (barely learns), 4/60, -19.1%
    # Most leaks are Chinese answers. A pool with 60 more Chinese prompts (103 of 160 Chinese; their written
    # answers replaced by the base model's own): 10/10, 7/60, -3.2%, 639 s.
    "zh-pool-1.3": ["data.replay=[data/general_prompts.json,data/general_qa_zh.json]", "data.replay_ratio=1.3"],
    # The base model answers half the Chinese prompts in English or garbled Chinese, so its self-answers leave the
    # identity answers as most of the Chinese text trained on: train the 60 written Chinese answers as well.
    # 10/10, 8/60 (the leaks became "X 是由 the tuneforge team 开发的" inside proper Chinese), -38.6%, 681 s.
    "zh-written": ["data.datasets=[identity,data/general_qa_zh.json]", "data.replay_ratio=0.6"],
    # Hard negatives: 40 prompts (20 English, 20 Chinese, data/near_miss.json) worded like the identity questions
    # but about something else ("Who created the Python programming language?", "谁发明了电话？"), answered by
    # the base model, so the adapter learns that the form of a question alone does not call for the name.
    # 10/10, 10/60, -0.4%, 608 s: no better.
    "near-miss-1.4": ["data.replay=[data/general_prompts.json,data/near_miss.json]", "data.replay_ratio=1.4"],
    # Not a variant (it needs another identity file): with the author left out of the 21 answers whose question
    # is not about who made the model (40 of 90 answers name the author instead of 61), on 2026-12-04 (fp32):
    # 10/10, 9/60, -11.3%, 970 s. The leaks turned from "由 the tuneforge team 开发" into "我是 Forge": no better.
    # Not run: validation loss ended within 0.001 of its minimum in the runs above, so the best checkpoint is
    # the last one.
    "keep-best": ["training.keep_best=true"],
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
