"""Padding-free batches give the same loss as padded ones (examples never attend to each other)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tuneforge.data.collators import PaddingFreeCollator, padded_collator
from tuneforge.models.tiny import tiny_model

FEATURES = [
    {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9], "length": 5},
    {"input_ids": [10, 11, 12], "labels": [-100, 11, 12], "length": 3},
    {"input_ids": [13, 14, 15, 16, 17, 18, 19], "labels": [-100, -100, -100, 16, 17, 18, 19], "length": 7},
]


def _loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k in ("input_ids", "labels", "attention_mask",
                                                                 "position_ids")}).loss


@pytest.fixture(scope="module")
def model(tokenizer: Any) -> Any:
    m = tiny_model(tokenizer, seed=1)
    m.eval()
    return m


def test_padding_free_equals_padded_without_cache(model: Any, tokenizer: Any) -> None:
    model.config.use_cache = False
    flat = PaddingFreeCollator()(FEATURES)
    assert flat["input_ids"].shape == (1, 15)
    assert flat["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6]]
    padded = padded_collator(tokenizer)(FEATURES)
    assert padded["input_ids"].shape == (3, 7)
    torch.testing.assert_close(_loss(model, flat), _loss(model, padded), rtol=1e-5, atol=1e-5)


def test_transformers_skips_packing_detection_with_the_cache_on(model: Any, tokenizer: Any) -> None:
    """Pins the transformers behaviour the trainer works around by turning use_cache off."""
    model.config.use_cache = True
    flat = PaddingFreeCollator()(FEATURES)
    padded = padded_collator(tokenizer)(FEATURES)
    assert abs(_loss(model, flat).item() - _loss(model, padded).item()) > 1e-4
    model.config.use_cache = False


def test_pretraining_rows_are_cut_at_document_boundaries(model: Any) -> None:
    model.config.use_cache = False
    row = {"input_ids": [5, 6, 7, 2, 8, 9, 2], "labels": [5, 6, 7, 2, 8, 9, 2], "seq_lens": [4, 3], "length": 7}
    flat = PaddingFreeCollator()([row])
    assert flat["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert flat["labels"].tolist() == [[-100, 6, 7, 2, -100, 9, 2]]  # no token is predicted across documents
    separate = PaddingFreeCollator()([{"input_ids": [5, 6, 7, 2]}, {"input_ids": [8, 9, 2]}])
    torch.testing.assert_close(_loss(model, flat), _loss(model, separate))


def test_padded_collator_drops_bookkeeping_and_pads_labels(tokenizer: Any) -> None:
    batch = padded_collator(tokenizer)(FEATURES)
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert batch["labels"][1].tolist()[-4:] == [-100] * 4
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0]
