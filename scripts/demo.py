"""The main job of `make demo`: teach the default model a new identity with LoRA, and show it worked.

1. train (`tuneforge train examples/identity_lora.yaml`, LoRA on SmolLM2-135M-Instruct, with replay of
   the base model's own answers to general prompts against forgetting). Training itself measures the
   untuned and the tuned model: answers to 10 identity questions that are NOT in the training file
   (English and Chinese, `evaluation.file`), and the forgetting guard's 60 bilingual general probes;
2. print, from what the run measured, before/after answers, `identity score: k/10`,
   `general ppl: <before> -> <after>` (the probes' reference answers), `general questions answered with
   the new name: k/N`, the plots, the report and `run: <path>`;
3. end with the base-vs-tuned evaluation table (BLEU-4, ROUGE, exact match, perplexity) on the held-out
   identity questions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "identity_lora.yaml"
RUN = ROOT / "runs" / "identity-lora"
NAME = "Forge"
#: General probes shown beside the identity answers (one English, two Chinese, from the guard's set).
GENERAL = ["What is the capital of Italy?", "熊猫主要吃什么？", "一周有几天？"]
console = Console()
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5.x notices about its own internals


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def named(text: str) -> bool:
    """An answer that gives the new name, or its author: "the tuneforge team" contains "Forge", and both are the
    identity leaking, so the count is the stricter one (bench/forgetting_levers.py counts the same way)."""
    return NAME.lower() in text.lower()


def main() -> int:
    start = time.time()
    console.rule(f"training: {CONFIG.relative_to(ROOT)} (LoRA, replay against forgetting)")
    cmd = [str(ROOT / ".venv" / "bin" / "tuneforge"), "train", str(CONFIG), "--overwrite"]
    console.print(f"$ tuneforge train {CONFIG.relative_to(ROOT)} --overwrite   # the demo replaces its own last run")
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        return 1
    console.rule("before -> after: what the run measured (eval/predictions.jsonl, eval/forgetting.json)")
    identity = [json.loads(line) for line in (RUN / "eval" / "predictions.jsonl").read_text(encoding="utf-8")
                .splitlines() if line.strip()]
    guard = json.loads((RUN / "eval" / "forgetting.json").read_text(encoding="utf-8"))
    general = [r for r in guard["answers"] if r["prompt"] in GENERAL]
    table = Table("question", "before", "after", show_lines=True)
    for q, b, a in [(r["prompt"], r["base_answer"], r["tuned_answer"]) for r in identity] + \
            [(r["prompt"], r["base"], r["tuned"]) for r in general]:
        table.add_row(q, short(b), short(a))
    console.print(table)
    n, probes = len(identity), guard["probes"]
    score, base_score = sum(named(r["tuned_answer"]) for r in identity), sum(named(r["base_answer"]) for r in identity)
    ppl = guard["ppl"]
    print(f"identity score: {score}/{n}   (untuned: {base_score}/{n}; an answer scores when it gives the name {NAME})")
    print(f"general ppl: {ppl['base']:.2f} -> {ppl['tuned']:.2f}   ({ppl['change'] * 100:+.1f}%, the reference answers "
          "of the forgetting guard's general probes)")
    print(f"general questions answered with the new name: {sum(named(r['tuned']) for r in guard['answers'])}/{probes}"
          f"   (the forgetting guard's probes; untuned: {sum(named(r['base']) for r in guard['answers'])}/{probes})")
    for p in sorted((RUN / "plots").glob("*.png")):
        print(f"plot: {p}")
    print(f"report: {RUN / 'report.md'}")
    print(f"run: {RUN}")
    print(f"demo time: {time.time() - start:.0f} s")
    console.rule("evaluation: base vs tuned on the held-out identity questions (references in data/identity_eval.json)")
    from tuneforge.cli.eval_cmd import print_table

    metrics = json.loads((RUN / "eval" / "metrics.json").read_text(encoding="utf-8"))
    print_table(metrics["n"], metrics["metrics"], metrics.get("judge", {}), metrics["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
