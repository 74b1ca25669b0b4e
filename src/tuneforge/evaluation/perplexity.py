"""Token-weighted perplexity of a model on plain texts."""

from __future__ import annotations

import math
from typing import Any

import torch


def perplexity(model: Any, tokenizer: Any, texts: list[str], max_length: int = 1024) -> float:
    """exp(mean negative log-likelihood per predicted token) over all texts."""
    total_nll, total_tokens = 0.0, 0
    model.eval()
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :max_length]
        if ids.shape[1] < 2:
            continue
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
        total_nll += nll.item()
        total_tokens += ids.shape[1] - 1
    return math.exp(total_nll / max(1, total_tokens))
