"""LoRA SFT training speed and memory: tuneforge vs TRL's SFTTrainer, plain HF Trainer and (optional) LLaMA-Factory.

Same model (the default SmolLM2-135M-Instruct), same data (alpaca_en_demo.json), LoRA rank 8 on all
linear layers, LoRA dropout 0, max_length 512, the same effective batch (4 x 2 accumulation) and number
of optimizer steps, learning rate 2e-4, linear schedule, seed 42. Each contender runs in its own
subprocess (so peak RSS is its own); with ``--repeats`` > 1 the contenders are interleaved and medians
reported.

Every contender gets its best documented setting for the machine it runs on: the precision is chosen
once by tuneforge's capability rule (bf16 on a GPU or CPU with fast bf16, fp16 on an older GPU, fp32
otherwise) and given to all; otherwise each keeps its own defaults:

- tuneforge: ``tuneforge.training.runner.train`` (padding-free batches, loss only at labelled positions,
  length grouping; gradient checkpointing off by default);
- TRL: ``SFTTrainer`` with its defaults (gradient checkpointing on) on the same records as
  prompt/completion conversations;
- HF: ``Trainer`` on the same token ids with ``DataCollatorForSeq2Seq`` padding and the model's own loss;
- LF (``--contenders ...,LF``, after ``bash bench/setup_llamafactory.sh``): LLaMA-Factory 0.9.5 in its own
  venv with its defaults (gradient checkpointing on, template ``smollm2``) on the same alpaca file.

Prints each contender's precision, gradient checkpointing, LoRA dropout and frozen-weight dtype as read back
from its own trainer, and where its process takes large blocks of memory from (tuneforge's
``cpu_allocator: auto`` keeps them in glibc's heap on a CPU; the peers keep glibc's default unless
``--peer-allocator heap`` gives them the same through glibc's environment tunables), real (non-pad) tokens/s, peak RSS, final loss and the loss-curve difference to tuneforge;
tuneforge's achieved GFLOP/s against the best dense matmul measured in the same run; ratios against
the faster (and the leaner) of TRL and LF. It ends with::

    tokens/s ratio tuneforge/TRL: <x>
    peak RSS ratio tuneforge/TRL: <x>
    tokens/s ratio tuneforge/LF: <x>      (when LF ran)
    peak RSS ratio tuneforge/LF: <x>      (when LF ran)
    matmul utilisation: <p>%
"""

from __future__ import annotations

import argparse
import json
import os
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
from common import peak_rss_mb, result_line, trainer_settings  # noqa: E402
from data_bench import trl_records  # noqa: E402  (the same records as TRL conversations)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "fixtures" / "llamafactory" / "alpaca_en_demo.json"
LF_PYTHON = ROOT / ".venv-lf" / "bin" / "python"
BATCH, ACCUM, MAX_LENGTH, LR, RANK, SEED = 4, 2, 512, 2e-4, 8, 42


def run_tuneforge(data: Path, steps: int, work: str, precision: str, same_order: bool = False,
                  training: dict[str, Any] | None = None) -> dict[str, Any]:
    """tuneforge's run of the job; ``training`` overrides keys of its ``training`` section (bench/cpu_levers.py)."""
    from tuneforge.config.schema import RunConfig
    from tuneforge.training.runner import train

    cfg = RunConfig.model_validate({
        "data": {"datasets": [str(data)], "max_length": MAX_LENGTH, "split": [1, 0, 0]},
        "method": {"name": "lora", "lora": {"rank": RANK, "alpha": 2 * RANK, "dropout": 0.0, "targets": "all-linear"}},
        "training": {"max_steps": steps, "learning_rate": LR, "batch_size": BATCH, "gradient_accumulation": ACCUM,
                     "warmup_ratio": 0.0, "weight_decay": 0.0, "logging_steps": 1, "save_steps": 10_000,
                     "scheduler": "linear", "seed": SEED, "group_by_length": not same_order, "precision": precision}
                    | (training or {}),
        "evaluation": {"forgetting": False, "auto": False},
        "output": {"dir": work, "name": "tf"}})
    result = train(cfg, progress=False, echo=lambda m: None)
    rows = [json.loads(x) for x in result.run.log.read_text().splitlines() if x.strip()]
    return {"tokens": result.tokens, "seconds": result.train_seconds, "final_loss": result.final_loss,
            "losses": [r["loss"] for r in rows if "loss" in r],
            "settings": trainer_settings(None, result.model, cfg.training.precision)}


def _hf_precision(precision: str) -> dict[str, bool]:
    """TrainingArguments for a precision, as a TRL or HF user sets them (``use_cpu`` on a CPU-only machine)."""
    import torch

    return {"use_cpu": not torch.cuda.is_available(), "bf16": precision == "bf16", "fp16": precision == "fp16"}


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


def _base(precision: str) -> tuple[Any, Any]:
    """The base model in the compute dtype (bf16/fp16 where the run computes in it, else fp32).

    As TRL's ``model_init_kwargs={"dtype": ...}`` would load it, and as tuneforge's ``frozen_precision: auto``
    holds an adapter's base; peft keeps the LoRA matrices in fp32. (LF 0.9.5 on a CPU keeps an fp32 base even
    with ``bf16: true``: its ``infer_optim_dtype`` picks bf16 only on a bf16 GPU; it then autocasts.)
    """
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from tuneforge.models.loading import load_tokenizer, resolve_model

    set_seed(SEED)
    path = resolve_model("default")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), load_tokenizer(path)


def _timed(trainer: Any, counter: _Counter) -> dict[str, Any]:
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": counter.tokens, "seconds": seconds, "final_loss": losses[-1] if losses else None,
            "losses": losses, "settings": trainer_settings(trainer.args, trainer.model)}


def run_trl(data: Path, steps: int, work: str, precision: str, same_order: bool = False) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _base(precision)
    args = SFTConfig(output_dir=work, max_steps=steps, per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=ACCUM, learning_rate=LR, max_length=MAX_LENGTH, logging_steps=1,
                     save_strategy="no", report_to=[], seed=SEED, warmup_steps=0, lr_scheduler_type="linear",
                     disable_tqdm=True, **_hf_precision(precision))
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


def run_hf(data: Path, steps: int, work: str, precision: str, same_order: bool = False) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model, tokenizer = _base(precision)
    cols = _tokenized(data, tokenizer)
    dataset = Dataset.from_dict({"input_ids": cols["input_ids"], "labels": cols["labels"]})
    args = TrainingArguments(output_dir=work, max_steps=steps, per_device_train_batch_size=BATCH,
                             gradient_accumulation_steps=ACCUM, learning_rate=LR, logging_steps=1, save_strategy="no",
                             report_to=[], seed=SEED, lr_scheduler_type="linear", disable_tqdm=True,
                             **_hf_precision(precision))
    counter = _Counter(DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100), steps * ACCUM)
    trainer = Trainer(model=_lora(model), args=args, train_dataset=dataset, data_collator=counter)
    return _timed(trainer, counter)


CONTENDERS = {"tuneforge": run_tuneforge, "TRL": run_trl, "HF": run_hf}
PEERS = ("TRL", "LF")  # the ratios that matter are against the stronger of these


def child(name: str, data: Path, steps: int, precision: str, same_order: bool) -> None:
    """Run one contender and print its figures as one JSON line."""
    with tempfile.TemporaryDirectory() as work:
        out = CONTENDERS[name](data, steps, work, precision, same_order)
    out["peak_rss_mb"] = peak_rss_mb()
    if name == "tuneforge":
        out["settings"]["allocator"] = _tuneforge_allocator()
    print("RESULT " + json.dumps(out))


def _tuneforge_allocator() -> str:
    """Where tuneforge's ``cpu_allocator: auto`` took large blocks from in this process."""
    import torch

    from tuneforge.training.allocator import _glibc

    return "default" if torch.cuda.is_available() or _glibc() is None else "heap"


def _peer_env(name: str, peer_allocator: str) -> dict[str, str] | None:
    """The environment of a peer's process: glibc's own tunables give it tuneforge's heap setting when asked."""
    from tuneforge.training.allocator import HEAP_BLOCK_LIMIT, KEEP_FREE

    if name == "tuneforge" or peer_allocator == "default":
        return None
    return os.environ | {"MALLOC_MMAP_THRESHOLD_": str(HEAP_BLOCK_LIMIT), "MALLOC_TRIM_THRESHOLD_": str(KEEP_FREE)}


def _command(name: str, data: Path, steps: int, precision: str, same_order: bool) -> list[str]:
    if name == "LF":
        from tuneforge.models.loading import resolve_model

        return [str(LF_PYTHON), str(ROOT / "bench" / "lf_child.py"), "--model", resolve_model("default"),
                "--data", str(data), "--precision", precision, "--steps", str(steps), "--batch", str(BATCH),
                "--accum", str(ACCUM), "--max-length", str(MAX_LENGTH), "--rank", str(RANK), "--seed", str(SEED),
                "--lr", str(LR)]
    return ([sys.executable, __file__, "--child", name, "--data", str(data), "--steps", str(steps),
             "--precision", precision] + (["--same-order"] if same_order else []))


def _spawn(name: str, data: Path, steps: int, precision: str, same_order: bool,
           peer_allocator: str = "default") -> dict[str, Any]:
    done = subprocess.run(_command(name, data, steps, precision, same_order), capture_output=True, text=True,
                          env=(env := _peer_env(name, peer_allocator)))
    result = result_line(done.stdout)
    if result is None:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result["settings"].setdefault("allocator", "heap (env)" if env else "default")
    return result


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
                        help="comma-separated subset of tuneforge,TRL,HF,LF (LF needs bench/setup_llamafactory.sh)")
    parser.add_argument("--child", choices=sorted(CONTENDERS))
    parser.add_argument("--precision", help="(children) the precision every contender runs in")
    parser.add_argument("--same-order", action="store_true",
                        help="tuneforge without length grouping: the same seeded example order as TRL and HF, so "
                             "the loss curves can be compared step by step")
    parser.add_argument("--peer-allocator", choices=["default", "heap"], default="default",
                        help="heap: TRL, HF and LF run with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ set to what "
                             "tuneforge's cpu_allocator sets by mallopt (not a documented setting of theirs)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.steps, args.precision, args.same_order)
        return
    names = ["tuneforge"] + [n for n in args.contenders.split(",") if n in (*CONTENDERS, "LF") and n != "tuneforge"]
    if "LF" in names and not LF_PYTHON.exists():
        raise SystemExit(f"LF asked for but {LF_PYTHON} is missing: run `bash bench/setup_llamafactory.sh` first")
    from tuneforge.training.precision import choose_precision

    precision = choose_precision("auto")
    print(f"# precision for every contender: {precision.name} ({precision.reason})")
    peaks = [_peak_matmul()]  # the machine is shared: measure the peak before and after, keep the best
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:  # interleaved
            results[name].append(_spawn(name, args.data, args.steps, precision.name, args.same_order,
                                       args.peer_allocator))
    peaks.append(_peak_matmul())
    _report(args, results, peaks)


def _medians(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {n: {k: statistics.median(r[k] for r in rs) for k in ("tokens", "seconds", "peak_rss_mb")} |
            {"final_loss": rs[-1]["final_loss"], "tps": statistics.median(r["tokens"] / r["seconds"] for r in rs)}
            for n, rs in results.items()}


def _report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]],
            peaks: list[tuple[float, float]]) -> None:
    med = _medians(results)
    print(f"# LoRA r={RANK} all-linear, SmolLM2-135M-Instruct, {args.data.name}, max_length {MAX_LENGTH}, "
          f"{args.steps} steps x batch {BATCH} x accumulation {ACCUM}, {args.repeats} repeat(s), medians")
    settings = {n: rs[-1]["settings"] for n, rs in results.items()}
    print("precision: " + " ".join(f"{n}={s['precision']}" for n, s in settings.items()))
    print("gradient checkpointing: " + " ".join(f"{n}={'on' if s['gradient_checkpointing'] else 'off'}"
                                                for n, s in settings.items()))
    print("lora dropout: " + " ".join(f"{n}={s['lora_dropout']:g}" for n, s in settings.items()))
    print("frozen base weights: " + " ".join(f"{n}={s.get('base_weights', '?')}" for n, s in settings.items()))
    print("allocator: " + " ".join(f"{n}={s.get('allocator', '?')}" for n, s in settings.items()))
    for name, m in med.items():
        print(f"{name}: {m['tps']:.0f} real tokens/s, peak RSS {m['peak_rss_mb']:.0f} MB, "
              f"final loss {m['final_loss']:.4f}, {m['tokens']:.0f} tokens in {m['seconds']:.1f} s")
    for other in [n for n in results if n != "tuneforge"]:
        a, b = results["tuneforge"][-1]["losses"], results[other][-1]["losses"]
        diff = max((abs(x - y) for x, y in zip(a, b, strict=False)), default=float("nan"))
        mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
        print(f"# loss curve vs {other} over {min(len(a), len(b))} steps: max |difference| {diff:.4f}, "
              f"mean {mean_a:.4f} vs {mean_b:.4f}"
              + ("" if args.same_order or other == "LF" else " (different example order: --same-order to compare)"))
    fp32, bf16 = max(p[0] for p in peaks), max(p[1] for p in peaks)
    achieved = med["tuneforge"]["tps"] * _flops_per_token(args.data) / 1e9
    print(f"# dense 1024^2 matmul here (best of 5, before and after): fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s; "
          f"tuneforge achieved {achieved:.1f} GFLOP/s (utilisation against the faster of the two)")
    peers = [n for n in PEERS if n in med]
    if peers:
        fastest = max(peers, key=lambda n: med[n]["tps"])
        leanest = min(peers, key=lambda n: med[n]["peak_rss_mb"])
        print(f"tokens/s ratio tuneforge/fastest peer ({fastest}): {med['tuneforge']['tps'] / med[fastest]['tps']:.2f}")
        print(f"peak RSS ratio tuneforge/leanest peer ({leanest}): "
              f"{med['tuneforge']['peak_rss_mb'] / med[leanest]['peak_rss_mb']:.2f}")
    if "HF" in med:
        print(f"tokens/s ratio tuneforge/HF: {med['tuneforge']['tps'] / med['HF']['tps']:.2f}")
    for peer in peers:
        print(f"tokens/s ratio tuneforge/{peer}: {med['tuneforge']['tps'] / med[peer]['tps']:.2f}")
        print(f"peak RSS ratio tuneforge/{peer}: {med['tuneforge']['peak_rss_mb'] / med[peer]['peak_rss_mb']:.2f}")
    print(f"matmul utilisation: {100 * achieved / max(fp32, bf16):.0f}%")


def _peak_matmul(tries: int = 5) -> tuple[float, float]:
    """Best fp32 and bf16 dense matmul GFLOP/s of a few tries (a single timing is noise on a shared host)."""
    import torch

    from tuneforge.training.precision import matmul_gflops

    return (max(matmul_gflops(torch.float32) for _ in range(tries)),
            max(matmul_gflops(torch.bfloat16, repeats=2) for _ in range(2)))


if __name__ == "__main__":
    main()
