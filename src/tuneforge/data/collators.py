"""Batch collators: padding-free (default for training on CPU) and padded.

Padding-free batching concatenates a batch into one row and restarts ``position_ids`` at every
example (and at every document inside a pre-training row), built on transformers'
``DataCollatorWithFlattening``. With SDPA on CPU this is exact, i.e. examples do not attend to each
other, only when the model runs with ``config.use_cache = False``: with the cache enabled,
transformers 5.23 skips packed-sequence detection (``tests/unit/test_collators.py`` pins both facts).
"""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

#: Row keys that are bookkeeping, not model inputs.
META_KEYS = ("length", "seq_lens")


class PaddingFreeCollator:
    """Flatten examples into one row; positions restart per example and per pre-training document.

    Args:
        flash_attn_kwargs: Also return ``cu_seq_lens`` / ``max_length`` (for flash-attention kernels on GPU).
    """

    def __init__(self, flash_attn_kwargs: bool = False) -> None:
        self._flatten = DataCollatorWithFlattening(return_flash_attn_kwargs=flash_attn_kwargs)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return self._flatten([piece for f in features for piece in _pieces(f)])


def _pieces(feature: dict[str, Any]) -> list[dict[str, Any]]:
    """One feature per sequence: pre-training rows are cut at their document boundaries."""
    ids, labels = list(feature["input_ids"]), list(feature.get("labels", feature["input_ids"]))
    lens = feature.get("seq_lens") or [len(ids)]
    out, start = [], 0
    for n in lens:
        out.append({"input_ids": ids[start:start + n], "labels": labels[start:start + n]})
        start += n
    return out


def padded_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
    """Right-padded batches with ``-100`` label padding (for kernels that need a rectangular batch)."""
    inner = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of)

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        return inner([{k: v for k, v in f.items() if k not in META_KEYS} for f in features])

    return collate
