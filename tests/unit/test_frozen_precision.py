"""An adapter's frozen base held in the compute precision trains like the fp32 copy under autocast.

docs/performance.md, "Frozen weights in the compute precision": with bf16 compute, autocast casts an fp32
weight to bf16 at every matmul, so holding the frozen base in bf16 feeds the matmuls the same numbers; what
differs is the rounding of the embeddings, the norms and the residual stream, which these tolerances bound.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import TrainingArguments

from tuneforge.config.schema import RunConfig
from tuneforge.data.collators import PaddingFreeCollator
from tuneforge.models.tiny import tiny_model
from tuneforge.models.tuning import TUNING
from tuneforge.training.precision import Precision
from tuneforge.training.runner import _load_model, trainable_in_fp32, weights_dtype
from tuneforge.training.stages import STAGES
from tuneforge.training.trainer import TuneforgeTrainer

FEATURES = [{"input_ids": list(range(20, 60)), "labels": [-100] * 10 + list(range(30, 60))},
            {"input_ids": list(range(70, 95)), "labels": [-100] * 5 + list(range(75, 95))}]
BF16_CPU, FP32_CPU = Precision("bf16", "cpu", "test"), Precision("fp32", "cpu", "test")
BF16_GPU = Precision("bf16", "cuda", "test")


@pytest.mark.parametrize(("precision", "adapter", "frozen", "quantized", "want"), [
    (BF16_CPU, True, "auto", False, torch.bfloat16),   # the lever: an adapter's base in the compute dtype
    (BF16_CPU, True, "fp32", False, torch.float32),    # asked for the fp32 copy
    (BF16_CPU, False, "auto", False, torch.float32),   # full/freeze: the weights train, fp32 master weights
    (FP32_CPU, True, "auto", False, torch.float32),    # a CPU without fast bf16 computes in fp32
    (BF16_CPU, True, "auto", True, torch.float32),     # bitsandbytes on a CPU keeps fp32 around its layers
    (BF16_GPU, True, "auto", True, torch.bfloat16),    # QLoRA on a GPU computes in bf16
])
def test_weights_dtype_rule(precision: Precision, adapter: bool, frozen: str, quantized: bool,
                            want: torch.dtype) -> None:
    assert weights_dtype(precision, adapter, frozen, quantized) == want


def test_frozen_precision_reaches_the_loaded_model(tiny_model_dir: Path) -> None:
    """training.frozen_precision decides the dtype the run's base is loaded in (bf16 compute)."""
    def loaded(frozen: str) -> torch.dtype:
        cfg = RunConfig.model_validate({"data": {"datasets": ["d.json"]},
                                        "model": {"name_or_path": str(tiny_model_dir)},
                                        "training": {"frozen_precision": frozen}})
        model = _load_model(str(tiny_model_dir), cfg, BF16_CPU, TUNING.get("lora"), STAGES.get("sft"))
        return model.get_input_embeddings().weight.dtype

    assert loaded("auto") == torch.bfloat16
    assert loaded("fp32") == torch.float32


def test_trainable_in_fp32_casts_only_trainable_half_parameters() -> None:
    head, frozen = torch.nn.Linear(4, 2).bfloat16(), torch.nn.Linear(4, 4).bfloat16().requires_grad_(False)
    model = torch.nn.Sequential(frozen, head)
    assert trainable_in_fp32(model) == 2  # the head's weight and bias
    assert head.weight.dtype == torch.float32 and frozen.weight.dtype == torch.bfloat16


def _lora(model: Any) -> Any:
    torch.manual_seed(7)  # init_lora_weights=False: A and B both random, so both get gradients
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, config)


def _step(model: Any, tmp_path: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One split padding-free training step under CPU bf16 autocast: the loss and the LoRA gradients."""
    model.config.use_cache = False
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=True, report_to="none")
    trainer = TuneforgeTrainer(model=model, args=args)
    trainer.split_packed = True
    loss = trainer.training_step(model, dict(PaddingFreeCollator()(FEATURES)))
    return loss, {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}


def test_bf16_frozen_base_matches_the_fp32_copy_under_autocast(tokenizer: Any, tmp_path: Path) -> None:
    base = tiny_model(tokenizer, seed=5)
    reference = _lora(copy.deepcopy(base))
    lever = _lora(base.to(torch.bfloat16))
    assert trainable_in_fp32(lever) == 0  # peft already keeps the LoRA matrices in fp32
    assert {p.dtype for p in lever.parameters() if not p.requires_grad} == {torch.bfloat16}
    ref_loss, ref_grads = _step(reference, tmp_path / "ref")
    loss, grads = _step(lever, tmp_path / "lever")
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=0)
    assert grads.keys() == ref_grads.keys() and len(grads) == 2 * 7 * 2  # A and B of 7 linears x 2 layers
    flat = torch.cat([g.flatten() for g in grads.values()])
    ref_flat = torch.cat([g.flatten() for g in ref_grads.values()])
    assert torch.nn.functional.cosine_similarity(flat, ref_flat, dim=0) > 0.99
    assert abs(flat.norm() / ref_flat.norm() - 1) < 0.05
