"""The trainer's sparse loss equals the model's own full-logit loss, packed, split per sequence or split into
right-padded causal batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainingArguments

from tuneforge.data.collators import PaddingFreeCollator, padded_collator
from tuneforge.models.tiny import tiny_model
from tuneforge.training.trainer import TuneforgeTrainer

FEATURES = [{"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
            {"input_ids": [11, 12, 13], "labels": [-100, 12, 13]},
            {"input_ids": [14, 15, 16, 17], "labels": [-100, -100, 16, 17]}]


@pytest.mark.parametrize(("piece_tokens", "pieces"), [(1, 3), (12, 2), (18, 1)])
def test_sparse_loss_packed_and_split_equal_the_full_loss(tokenizer: Any, tmp_path: Path, piece_tokens: int,
                                                          pieces: int) -> None:
    model = tiny_model(tokenizer, seed=3)
    model.config.use_cache = False
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = TuneforgeTrainer(model=model, args=args)
    trainer.piece_tokens = piece_tokens
    with torch.no_grad():
        reference = model(**padded_collator(tokenizer)(FEATURES)).loss  # full logits, mean over labels
        trainer.split_packed = False
        packed = trainer.compute_loss(model, dict(PaddingFreeCollator()(FEATURES)))
        trainer.split_packed = True
        split = trainer.compute_loss(model, dict(PaddingFreeCollator()(FEATURES)))
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(split, reference, rtol=1e-5, atol=1e-5)
    # lengths 6, 3, 4: budget 12 stacks the first two (2 x 6) and leaves the third; 18 stacks all (3 x 6)
    split_into = trainer._pieces(dict(PaddingFreeCollator()(FEATURES)), torch.zeros(1, 13))
    assert len(split_into) == pieces
    assert all(p["input_ids"].numel() <= max(piece_tokens, 6) and "attention_mask" not in p for p, _ in split_into)


def _grads(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("piece_tokens", [1, 12, 100])
def test_split_training_step_backpropagates_the_same_gradients(tokenizer: Any, tmp_path: Path,
                                                               piece_tokens: int) -> None:
    """Forward and backward one sequence (or one right-padded batch of sequences) at a time gives the
    gradients of one packed backward."""
    model = tiny_model(tokenizer, seed=4)
    model.config.use_cache = False
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = TuneforgeTrainer(model=model, args=args)
    trainer.piece_tokens = piece_tokens
    features = FEATURES + [{"input_ids": [18, 19], "labels": [-100, -100]}]  # a sequence with nothing to learn
    batch = PaddingFreeCollator()(features)
    losses, grads = [], []
    for split in (False, True):
        model.zero_grad()
        trainer.split_packed = split
        losses.append(trainer.training_step(model, dict(batch)))
        grads.append(_grads(model))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert trainer.tokens_seen == 2 * sum(len(f["input_ids"]) for f in features)
