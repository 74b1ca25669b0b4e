"""The main job of `make demo`: teach the default model a new identity with LoRA, and show it worked.

1. ask the untuned model 10 identity questions that are NOT in the training file (English and Chinese),
   3 general questions, and measure its perplexity on held-out general text;
2. train (`tuneforge train examples/identity_lora.yaml`, LoRA on SmolLM2-135M-Instruct, with replay of
   the base model's own answers to general prompts against forgetting);
3. ask the trained model the same, and print before/after, `identity score: k/10`,
   `general ppl: <before> -> <after>`, `general questions answered with the new name: k/N` (the
   forgetting guard's 60 bilingual probes), the plots, the report and `run: <path>`;
4. end with the base-vs-tuned evaluation table (BLEU-4, ROUGE, exact match, perplexity) that training
   computed on the held-out identity questions (`evaluation.file` in the config).
"""

from __future__ import annotations

import gc
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
SYSTEM = "You are a helpful AI assistant."  # the system prompt the config trains with
GENERAL = ["What is the capital of France?", "Give me three tips for better sleep.", "中国的首都是哪里？"]
console = Console()
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5.x notices about its own internals


def ask(model: str) -> tuple[list[str], float]:
    """Greedy answers to the identity and general questions, and perplexity on held-out general text."""
    from tuneforge.data.records import Message
    from tuneforge.evaluation import perplexity
    from tuneforge.inference import Engine, GenerationOptions

    engine = Engine.load(model, system=SYSTEM)
    questions = identity_questions() + GENERAL
    answers = engine.generate_batch([[Message("user", q)] for q in questions],
                                    GenerationOptions(64, temperature=0.0, repetition_penalty=1.1))
    texts = (ROOT / "data" / "general_heldout.txt").read_text(encoding="utf-8").splitlines()
    ppl = perplexity(engine.model, engine.tokenizer, [t for t in texts if t.strip()])
    del engine
    gc.collect()
    return answers, ppl


def identity_questions() -> list[str]:
    return [r["instruction"] for r in json.loads((ROOT / "data" / "identity_eval.json").read_text(encoding="utf-8"))]


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def main() -> int:
    start = time.time()
    console.rule("before: the untuned default model")
    before, ppl_before = ask("default")
    console.rule(f"training: {CONFIG.relative_to(ROOT)} (LoRA, replay against forgetting)")
    cmd = [str(ROOT / ".venv" / "bin" / "tuneforge"), "train", str(CONFIG), "--overwrite"]
    console.print(f"$ tuneforge train {CONFIG.relative_to(ROOT)} --overwrite   # the demo replaces its own last run")
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        return 1
    console.rule("after: the trained model")
    after, ppl_after = ask(str(RUN))
    n = len(identity_questions())
    table = Table("question", "before", "after", show_lines=True)
    for q, b, a in zip(identity_questions() + GENERAL, before, after, strict=True):
        table.add_row(q, short(b), short(a))
    console.print(table)
    score = sum(NAME.lower() in a.lower() for a in after[:n])
    base_score = sum(NAME.lower() in b.lower() for b in before[:n])
    change = (ppl_after - ppl_before) / ppl_before * 100
    print(f"identity score: {score}/{n}   (untuned: {base_score}/{n}; an answer scores when it gives the name {NAME})")
    print(f"general ppl: {ppl_before:.2f} -> {ppl_after:.2f}   ({change:+.1f}%, held-out general text)")
    guard = json.loads((RUN / "eval" / "forgetting.json").read_text(encoding="utf-8"))
    named = sum(NAME.lower() in r["tuned"].lower() for r in guard["answers"])
    print(f"general questions answered with the new name: {named}/{guard['probes']}   (the forgetting guard's "
          f"probes, eval/forgetting.json; untuned: {sum(NAME.lower() in r['base'].lower() for r in guard['answers'])})")
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
