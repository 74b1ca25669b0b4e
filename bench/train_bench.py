"""LoRA SFT training speed and memory: tuneforge vs TRL's SFTTrainer vs plain HF Trainer.

Same model (the default SmolLM2-135M-Instruct), same data (alpaca_en_demo.json), LoRA rank 8 on all
linear layers, max_length 512, the same effective batch (4 x 2 accumulation) and number of optimizer
steps, learning rate 2e-4, seed 42. Each contender runs in its own subprocess (so peak RSS is its
own); with ``--repeats`` > 1 the contenders are interleaved and medians reported.

- tuneforge: ``tuneforge.training.runner.train`` (padding-free batches, loss only at labelled positions,
  length grouping, automatic precision);
- TRL: ``SFTTrainer`` with its defaults on the same records as prompt/completion conversations (only
  ``use_cpu``/``bf16=False`` set on a CPU without bf16, because its defaults refuse to start there);
- HF: ``Trainer`` on the same token ids with ``DataCollatorForSeq2Seq`` padding and the model's own loss.

Prints real (non-pad) tokens/s, peak RSS and final loss per contender, tuneforge's achieved GFLOP/s
against a dense matmul measured in the same run, and ends with exactly::

    tokens/s ratio tuneforge/TRL: <x>
    peak RSS ratio tuneforge/TRL: <x>
    matmul utilisation: <p>%
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
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_bench import trl_records  # noqa: E402  (the same records as TRL conversations)

DATA = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "llamafactory" / "alpaca_en_demo.json"
BATCH, ACCUM, MAX_LENGTH, LR, RANK, SEED = 4, 2, 512, 2e-4, 8, 42


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tuneforge(data: Path, steps: int, work: str, same_order: bool = False) -> dict[str, Any]:
    from tuneforge.config.schema import RunConfig
    from tuneforge.training.runner import train

    cfg = RunConfig.model_validate({
        "data": {"datasets": [str(data)], "max_length": MAX_LENGTH, "split": [1, 0, 0]},
        "method": {"name": "lora", "lora": {"rank": RANK, "alpha": 2 * RANK, "dropout": 0.0, "targets": "all-linear"}},
        "training": {"max_steps": steps, "learning_rate": LR, "batch_size": BATCH, "gradient_accumulation": ACCUM,
                     "warmup_ratio": 0.0, "weight_decay": 0.0, "logging_steps": 1, "save_steps": 10_000,
                     "scheduler": "linear", "seed": SEED, "group_by_length": not same_order},
        "output": {"dir": work, "name": "tf"}})
    result = train(cfg, progress=False, echo=lambda m: None)
    rows = [json.loads(x) for x in result.run.log.read_text().splitlines() if x.strip()]
    return {"tokens": result.tokens, "seconds": result.train_seconds, "final_loss": result.final_loss,
            "losses": [r["loss"] for r in rows if "loss" in r]}


class _Counter:
    """Wraps a collator and counts real (attention-mask) tokens per collated batch.

    The dataloader collates one batch ahead of training (accelerate peeks to find the end), so only
    the first steps x accumulation batches were trained on: :attr:`tokens` sums those.
    """

    def __init__(self, inner: Any, trained_batches: int) -> None:
        self.inner, self.counts, self.trained_batches = inner, [], trained_batches

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        mask = batch.get("attention_mask")
        self.counts.append(int(mask.sum()) if mask is not None else batch["input_ids"].numel())
        return batch

    @property
    def tokens(self) -> int:
        return sum(self.counts[: self.trained_batches])


def _lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def _base() -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from tuneforge.models.loading import load_tokenizer, resolve_model

    set_seed(SEED)
    path = resolve_model("default")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), load_tokenizer(path)


def _timed(trainer: Any, counter: _Counter) -> dict[str, Any]:
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": counter.tokens, "seconds": seconds, "final_loss": losses[-1] if losses else None,
            "losses": losses}


def run_trl(data: Path, steps: int, work: str, same_order: bool = False) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _base()
    args = SFTConfig(output_dir=work, max_steps=steps, per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=ACCUM, learning_rate=LR, max_length=MAX_LENGTH, logging_steps=1,
                     save_strategy="no", report_to=[], seed=SEED, warmup_steps=0, lr_scheduler_type="linear",
                     use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(),
                     disable_tqdm=True)
    trainer = SFTTrainer(model=_lora(model), args=args, train_dataset=Dataset.from_list(trl_records(data)),
                         processing_class=tokenizer)
    counter = _Counter(trainer.data_collator, steps * ACCUM)
    trainer.data_collator = counter
    return _timed(trainer, counter)


def _tokenized(data: Path, tokenizer: Any) -> dict[str, list[list[int]]]:
    """input_ids and labels of every example, as tuneforge and the HF contender train on them."""
    from tuneforge.config.schema import DataConfig
    from tuneforge.data.loader import load_data
    from tuneforge.data.processors.base import ProcessOptions, process_examples
    from tuneforge.data.templates import resolve_template

    examples = load_data(DataConfig(datasets=[str(data)])).examples
    return process_examples(examples, ProcessOptions(tokenizer, resolve_template("auto", tokenizer), MAX_LENGTH)).columns


def run_hf(data: Path, steps: int, work: str, same_order: bool = False) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model, tokenizer = _base()
    cols = _tokenized(data, tokenizer)
    dataset = Dataset.from_dict({"input_ids": cols["input_ids"], "labels": cols["labels"]})
    args = TrainingArguments(output_dir=work, max_steps=steps, per_device_train_batch_size=BATCH,
                             gradient_accumulation_steps=ACCUM, learning_rate=LR, logging_steps=1, save_strategy="no",
                             report_to=[], seed=SEED, lr_scheduler_type="linear", use_cpu=not torch.cuda.is_available(),
                             disable_tqdm=True)
    counter = _Counter(DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100), steps * ACCUM)
    trainer = Trainer(model=_lora(model), args=args, train_dataset=dataset, data_collator=counter)
    return _timed(trainer, counter)


CONTENDERS = {"tuneforge": run_tuneforge, "TRL": run_trl, "HF": run_hf}


def child(name: str, data: Path, steps: int, same_order: bool) -> None:
    """Run one contender and print its figures as one JSON line."""
    with tempfile.TemporaryDirectory() as work:
        out = CONTENDERS[name](data, steps, work, same_order)
    out["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(out))


def _spawn(name: str, data: Path, steps: int, same_order: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--data", str(data), "--steps", str(steps)]
    done = subprocess.run(cmd + (["--same-order"] if same_order else []), capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(line[7:])


def _flops_per_token(data: Path) -> float:
    """Training FLOPs per real token of LoRA on all linear layers, averaged over the data's examples.

    Counted (the usual model-FLOPs convention, nothing for norms or activations):
    - frozen linear layers: forward 2 and backward to the inputs 2 per weight (no weight gradients);
    - LoRA matrices: forward 2, input gradient 2, weight gradient 2 per weight;
    - ``lm_head``: 4 per weight at labelled positions only (the measured label fraction of this data);
    - causal attention: scores and weighted sum, forward 2*s^2*h and backward twice that per layer and
      sequence, so 6*h*L*sum(s^2)/sum(s) per token.
    """
    from transformers import AutoConfig

    from tuneforge.models.loading import load_tokenizer, resolve_model

    c = AutoConfig.from_pretrained(resolve_model("default"))
    h, i, n, v = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    kv = c.num_key_value_heads * (h // c.num_attention_heads)
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down
    frozen = n * sum(a * b for a, b in shapes)
    lora = n * sum(RANK * (a + b) for a, b in shapes)
    cols = _tokenized(data, load_tokenizer(resolve_model("default")))
    lengths = [len(x) for x in cols["input_ids"]]
    labelled = sum(sum(1 for y in lab[1:] if y != -100) for lab in cols["labels"]) / sum(lengths)
    attention = 6 * h * n * sum(s * s for s in lengths) / sum(lengths)
    return 4 * frozen + 6 * lora + 4 * h * v * labelled + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="comma-separated subset (ratios to TRL are printed only when TRL runs)")
    parser.add_argument("--child", choices=sorted(CONTENDERS))
    parser.add_argument("--same-order", action="store_true",
                        help="tuneforge without length grouping: the same seeded example order as TRL and HF, so "
                             "the loss curves can be compared step by step")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.steps, args.same_order)
        return
    names = [n for n in args.contenders.split(",") if n in CONTENDERS]
    peaks = [_peak_matmul()]  # the machine is shared: measure the peak before and after, keep the best
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:  # interleaved
            results[name].append(_spawn(name, args.data, args.steps, args.same_order))
    peaks.append(_peak_matmul())
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("tokens", "seconds", "peak_rss_mb")} |
           {"final_loss": rs[-1]["final_loss"], "tps": statistics.median(r["tokens"] / r["seconds"] for r in rs)}
           for n, rs in results.items()}
    print(f"# LoRA r={RANK} all-linear, SmolLM2-135M-Instruct, {args.data.name}, max_length {MAX_LENGTH}, "
          f"{args.steps} steps x batch {BATCH} x accumulation {ACCUM}, {args.repeats} repeat(s), medians")
    for name, m in med.items():
        print(f"{name}: {m['tps']:.0f} real tokens/s, peak RSS {m['peak_rss_mb']:.0f} MB, "
              f"final loss {m['final_loss']:.4f}, {m['tokens']:.0f} tokens in {m['seconds']:.1f} s")
    if "HF" in med:
        print(f"tokens/s ratio tuneforge/HF: {med['tuneforge']['tps'] / med['HF']['tps']:.2f}")
    for other in [n for n in ("TRL", "HF") if n in results]:
        a, b = results["tuneforge"][-1]["losses"], results[other][-1]["losses"]
        diff = max((abs(x - y) for x, y in zip(a, b, strict=False)), default=float("nan"))
        print(f"# loss curve max |tuneforge - {other}| over {min(len(a), len(b))} steps: {diff:.4f}"
              + ("" if args.same_order else " (different example order: use --same-order to compare)"))
    fp32, bf16 = max(p[0] for p in peaks), max(p[1] for p in peaks)
    achieved = med["tuneforge"]["tps"] * _flops_per_token(args.data) / 1e9
    peak = max(fp32, bf16)
    print(f"# dense 1024^2 matmul here (best of 5, before and after): fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s; "
          f"tuneforge achieved {achieved:.1f} GFLOP/s (utilisation against the faster of the two)")
    if "TRL" in med:
        print(f"tokens/s ratio tuneforge/TRL: {med['tuneforge']['tps'] / med['TRL']['tps']:.2f}")
        print(f"peak RSS ratio tuneforge/TRL: {med['tuneforge']['peak_rss_mb'] / med['TRL']['peak_rss_mb']:.2f}")
    print(f"matmul utilisation: {100 * achieved / peak:.0f}%")


def _peak_matmul(tries: int = 5) -> tuple[float, float]:
    """Best fp32 and bf16 dense matmul GFLOP/s of a few tries (a single timing is noise on a shared host)."""
    import torch

    from tuneforge.training.precision import matmul_gflops

    return (max(matmul_gflops(torch.float32) for _ in range(tries)),
            max(matmul_gflops(torch.bfloat16, repeats=2) for _ in range(2)))


if __name__ == "__main__":
    main()
