"""DPO + LoRA on the default model and ``dpo_en_demo.json``: does it learn, and what does the reference cost?

1. *Learning* (``--steps``, default 30): tuneforge trains DPO with LoRA; on held-out pairs (the seeded
   validation split) it prints the DPO reward margin and preference accuracy logged at step 0 and after
   training (evaluation at step 0 is exact: policy = reference, margin 0), plus the model's own pairwise
   preference (mean log-probability of chosen > rejected) of the base and of the tuned model.
2. *Memory* (``--memory-steps``, default 4): peak RSS of tuneforge's DPO (reference = the base with the
   adapter disabled) against TRL's ``DPOTrainer`` with its own PEFT handling (``peft_config`` and no
   ``ref_model``: the same adapter-disabled reference, the fair comparison, printed first) and against
   TRL given an explicit reference model copy; same data, same LoRA, same batch, all with gradient
   checkpointing (TRL's default); each in its own subprocess.

Usage: ``python bench/dpo_bench.py [--steps 30] [--memory-steps 4] [--skip-learning]``

Measured on the 2-core CPU (quiet, fp32, 2026-12-02): 30 held-out pairs, margins 0 -> 0.021, accuracies
0 -> 0.60 (0 at step 0: policy = reference, every pair a tie), own preference 0.526 -> 0.526. With bf16
autocast the same 30 steps gave margins -0.013 and accuracies 0.45 (see PRECISION).
Memory, fp32 CPU without bf16, 2026-12-04 (``--skip-learning``, tuneforge's forgetting guard off, as TRL has
none): tuneforge 4032 MB, TRL with its own PEFT handling 3986 MB (ratio 1.01), TRL with a reference copy
4569 MB (ratio 0.88). With the guard on, an earlier run gave 4154 MB against 3936 MB (1.06).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "fixtures" / "llamafactory" / "dpo_en_demo.json"
MAX_LENGTH = 384


#: fp32 like TRL's run below (use_cpu, bf16=False), so the memory comparison is the same job; with bf16
#: autocast on a CPU the logits are rounded to bf16 (steps of 0.125 near 20), noise larger than the few
#: hundredths the DPO margin moves in 30 steps at this learning rate.
PRECISION = "fp32"


def config(out: Path, steps: int, eval_steps: int, validation: float = 0.1, checkpointing: bool = False) -> Any:
    """The DPO job; ``validation=0`` for the memory runs (TRL's run has no evaluation either)."""
    from tuneforge.config.schema import RunConfig

    return RunConfig.model_validate({
        "model": {"name_or_path": "default"},
        "data": {"datasets": [str(DATA)], "max_length": MAX_LENGTH, "split": [1.0 - validation, validation, 0.0]},
        "method": {"name": "lora", "lora": {"rank": 8, "dropout": 0.0}},
        "training": {"stage": "dpo", "max_steps": steps, "learning_rate": 5e-5, "batch_size": 2,
                     "gradient_accumulation": 1, "logging_steps": 1, "eval_steps": eval_steps,
                     "save_steps": steps, "warmup_ratio": 0.0, "eval_on_start": validation > 0,
                     "gradient_checkpointing": checkpointing, "precision": PRECISION},
        "alignment": {"beta": 0.1},
        # TRL has no forgetting guard: its probe answers (generated before and after training) would
        # add their KV caches to tuneforge's peak and their minutes to the learning run
        "evaluation": {"forgetting": False},
        "output": {"dir": str(out), "name": "dpo", "overwrite": True},
    })


def learning(steps: int) -> None:
    from tuneforge.training.runner import train

    with tempfile.TemporaryDirectory() as tmp:
        result = train(config(Path(tmp), steps, steps), echo=lambda m: None, progress=False)
        rows = [json.loads(x) for x in result.run.log.read_text().splitlines()]
        evals = [r for r in rows if "eval_loss" in r]
        first, last = evals[0], evals[-1]
        print(f"held-out pairs: {_held_out(result)}; {steps} steps in {result.train_seconds:.0f} s")
        for key in ("rewards/margins", "rewards/accuracies"):
            print(f"{key}: step {first['step']} {first['eval_' + key]:.4f} -> step {last['step']} "
                  f"{last['eval_' + key]:.4f}")
        base, tuned = _own_preference(result)
        print(f"own preference accuracy (mean logp chosen > rejected): base {base:.3f} -> tuned {tuned:.3f}")


def _held_out(result: Any) -> int:
    report = json.loads((result.run.root / "data_report.json").read_text())
    return report["examples"]["validation"]


def _own_preference(result: Any) -> tuple[float, float]:
    """Share of held-out pairs where the mean answer log-prob of chosen beats rejected, base vs tuned."""
    import torch
    from datasets import Dataset

    trainer_model = result.model
    from tuneforge.config.schema import RunConfig
    from tuneforge.data.templates import resolve_template
    from tuneforge.models.loading import load_tokenizer, resolve_model
    from tuneforge.training import data as training_data

    cfg = RunConfig.model_validate_json(json.dumps(__import__("yaml").safe_load(
        (result.run.root / "config.yaml").read_text())))
    tok = load_tokenizer(resolve_model("default"))
    data = training_data.prepare(cfg, tok, resolve_template("auto", tok), "dpo")
    rows = Dataset.from_dict(data.eval.columns)

    def accuracy() -> float:
        wins = 0
        for r in rows:
            scores = []
            for side in ("chosen_ids", "rejected_ids"):
                ids = torch.tensor([r["prompt_ids"] + r[side]])
                with torch.no_grad():
                    logits = trainer_model(input_ids=ids).logits[0, len(r["prompt_ids"]) - 1:-1]
                lp = torch.log_softmax(logits.float(), -1).gather(1, ids[0, len(r["prompt_ids"]):, None])
                scores.append(lp.mean().item())
            wins += scores[0] > scores[1]
        return wins / len(rows)

    trainer_model.eval()
    with trainer_model.disable_adapter():
        base = accuracy()
    return base, accuracy()


def memory(steps: int) -> None:
    peaks = {name: _run_child(name, steps) for name in ("tuneforge", "trl-peft", "trl-explicit-ref")}
    for name, (rss, info) in peaks.items():
        print(f"{name}: peak RSS {rss:.1f} MB ({info})")
    # the fair figure first: TRL's own PEFT handling also uses the base with the adapter disabled as reference
    print(f"peak RSS ratio tuneforge/TRL-peft (adapter disabled as reference): "
          f"{peaks['tuneforge'][0] / peaks['trl-peft'][0]:.2f}")
    print(f"peak RSS ratio tuneforge/TRL-with-reference-copy: {peaks['tuneforge'][0] / peaks['trl-explicit-ref'][0]:.2f}")


def _run_child(name: str, steps: int) -> tuple[float, str]:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--memory-steps", str(steps)],
                         capture_output=True, text=True, check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    rss, info = line.removeprefix("RESULT ").split(" ", 1)
    return float(rss), info


def child(name: str, steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if name == "tuneforge":
            from tuneforge.training.runner import train

            r = train(config(Path(tmp), steps, steps, validation=0.0, checkpointing=True), echo=lambda m: None,
                      progress=False)
            info = f"{r.steps} steps, final loss {r.final_loss:.4f}"
        else:
            info = _trl(Path(tmp), steps, reference_copy=name == "trl-explicit-ref")
    print(f"RESULT {peak_rss_mb():.1f} {info}")


def _trl(tmp: Path, steps: int, reference_copy: bool) -> str:
    """TRL's DPOTrainer on the same tokenized pairs; the reference is a second loaded copy
    (``reference_copy``) or, TRL's own PEFT handling, the policy with its adapter disabled."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from tuneforge.data.templates import resolve_template
    from tuneforge.models.loading import load_tokenizer, resolve_model
    from tuneforge.training import data as training_data
    from tuneforge.training.stages.preference import TokenizedPairsMixin

    cfg = config(tmp, steps, steps, validation=0.0)
    path = resolve_model("default")
    tok = load_tokenizer(path)
    data = training_data.prepare(cfg, tok, resolve_template("auto", tok), "dpo")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32) if reference_copy else None
    args = DPOConfig(output_dir=str(tmp / "trl"), max_steps=steps, per_device_train_batch_size=2,
                     learning_rate=5e-5, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                     bf16=False, max_length=MAX_LENGTH, beta=0.1, seed=42, gradient_checkpointing=True)
    class Pretokenized(TokenizedPairsMixin, DPOTrainer):
        """DPOTrainer itself; only its tokenization is skipped (the pairs are already token ids)."""

    trainer = Pretokenized(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_dict(data.train.columns),
                         processing_class=tok,
                         peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    out = trainer.train()
    return f"{steps} steps, final loss {out.training_loss:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--memory-steps", type=int, default=4)
    p.add_argument("--skip-learning", action="store_true")
    p.add_argument("--child", default=None)
    a = p.parse_args()
    if a.child:
        child(a.child, a.memory_steps)
        return
    if not a.skip_learning:
        learning(a.steps)
    memory(a.memory_steps)


if __name__ == "__main__":
    main()
