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
            logits = _own_logits(model(input_ids=ids).logits, ids.shape[1])[:-1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
        total_nll += nll.item()
        total_tokens += ids.shape[1] - 1
    return math.exp(total_nll / max(1, total_tokens))


def answer_perplexity(model: Any, tokenizer: Any, template: Any, examples: list[Any], max_length: int = 1024) -> float:
    """Perplexity of the reference answers given their prompts (only the trained span counts).

    The examples are rendered and masked exactly as for training (same template, same labels), so this is
    the test-split counterpart of the validation loss: exp(mean NLL per labelled token).
    """
    from tuneforge.data.processors.base import ProcessOptions, process_examples

    cols = process_examples(examples, ProcessOptions(tokenizer, template, max_length)).columns
    total_nll, total_tokens = 0.0, 0
    model.eval()
    for ids, labels in zip(cols["input_ids"], cols["labels"], strict=True):
        target = torch.tensor(labels[1:])
        if int((target != -100).sum()) == 0:
            continue
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=model.device)).logits
            logits = _own_logits(out, len(ids))[:-1].float().cpu()
        total_nll += torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum").item()
        total_tokens += int((target != -100).sum())
    return math.exp(total_nll / total_tokens) if total_tokens else float("nan")


def _own_logits(logits: torch.Tensor, length: int) -> torch.Tensor:
    """The logits of the input's own ``length`` positions (prompt tuning puts its virtual tokens' first)."""
    return logits[0, logits.shape[1] - length:]
