"""torch.compile of the decoder layers on CPU, against eager, on the train_bench model and data.

The default model with LoRA r8 on every linear layer (dropout 0, as ``bench/train_bench.py``), fp32 or
the precision tuneforge's capability rule picks, forward and backward of real alpaca_en_demo examples one
sequence at a time, as tuneforge's CPU path runs a padding-free row. Each decoder layer is compiled with
``dynamic=True`` (one graph for every sequence length, so the varying shapes of padding-free training do
not recompile at each step). Rounds of eager and compiled alternate in one process; the script prints the
compile time (the first round), the medians of real tokens/s of the later rounds, and the largest
difference in loss and LoRA gradients between the two paths on the same sequences.

Usage: ``python bench/compile_lever.py [--sequences 16] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_bench import DATA, _base, _lora, _tokenized  # noqa: E402


def _pass(model: Any, seqs: list[tuple[Any, Any]], autocast: Any) -> tuple[float, list[float], list[Any]]:
    """Forward and backward of every sequence; (seconds, losses, LoRA gradients)."""
    model.zero_grad(set_to_none=True)
    losses = []
    start = time.perf_counter()
    for ids, labels in seqs:
        with autocast():
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
        loss.backward()
        losses.append(float(loss))
    seconds = time.perf_counter() - start
    # by position: compiled layers rename their parameters (``_orig_mod``), the order stays
    grads = [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]
    return seconds, losses, grads


def main() -> None:
    import contextlib
    import functools

    import torch

    from tuneforge.training.allocator import configure_allocator
    from tuneforge.training.precision import choose_precision

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    precision = choose_precision("auto").name
    print(f"# {configure_allocator('auto', 'cpu') or 'allocator: glibc as it is'} (as tuneforge trains; both paths)")
    autocast = (functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext)
    model, tokenizer = _base(precision)  # the base in the compute dtype, as tuneforge holds an adapter's base
    model = _lora(model)
    model.train()
    cols = _tokenized(DATA, tokenizer)
    seqs = [(torch.tensor([i]), torch.tensor([lab])) for i, lab in
            zip(cols["input_ids"][: a.sequences], cols["labels"][: a.sequences], strict=True)]
    tokens = sum(ids.shape[1] for ids, _ in seqs)
    layers = model.base_model.model.model.layers
    eager = list(layers)
    compiled = [torch.compile(layer, dynamic=True) for layer in eager]

    def use(mods: list[Any]) -> None:
        for k, mod in enumerate(mods):
            layers[k] = mod

    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    use(eager)
    _, ref_losses, ref_grads = _pass(model, seqs, autocast)  # warm-up, and the reference values
    use(compiled)
    first, losses, grads = _pass(model, seqs, autocast)  # compiles (first call per shape class)
    for _ in range(a.rounds):
        for name, mods in (("eager", eager), ("compiled", compiled)):
            use(mods)
            times[name].append(_pass(model, seqs, autocast)[0])
    loss_diff = max(abs(x - y) for x, y in zip(ref_losses, losses, strict=True))
    grad_diff = max(float((g - r).abs().max() / r.abs().max().clamp_min(1e-12))
                    for g, r in zip(grads, ref_grads, strict=True))
    print(f"# {len(seqs)} alpaca sequences ({tokens} tokens) forward+backward one at a time, precision {precision}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {a.rounds} interleaved rounds, medians")
    print(f"compile: first compiled round {first:.1f} s ({tokens / first:.0f} tokens/s, includes compiling)")
    eager_tps = tokens / statistics.median(times["eager"])
    compiled_tps = tokens / statistics.median(times["compiled"])
    print(f"eager: {eager_tps:.0f} tokens/s (1.00x)")
    print(f"compiled: {compiled_tps:.0f} tokens/s ({compiled_tps / eager_tps:.2f}x)")
    print(f"largest loss difference {loss_diff:.2e}, largest LoRA gradient difference {grad_diff:.2e} (relative to "
          "the gradient's largest entry)")


if __name__ == "__main__":
    main()
