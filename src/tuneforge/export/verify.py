"""Check that two models answer alike: greedy tokens equal and the largest logit difference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tuneforge.data.records import Message
from tuneforge.data.templates import ChatTemplate

PROBES = ["Who are you?", "What is the capital of France?", "Write a haiku about autumn.",
          "你好，请介绍一下你自己。", "List three prime numbers."]


@dataclass
class Verification:
    """Outcome of comparing a reference model with a candidate."""

    max_logit_diff: float
    greedy_equal: int
    probes: int
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return self.greedy_equal == self.probes


def compare(reference: Any, candidate: Any, tokenizer: Any, template: ChatTemplate, max_new_tokens: int = 24,
            prompts: list[str] | None = None, generate: bool = True) -> Verification:
    """Greedy continuations and logits of both models on the probe prompts.

    ``generate=False`` (reward models: their logits are the scores) compares logits only; a probe then counts
    as equal when its logits are.
    """
    worst, equal, mismatches = 0.0, 0, []
    prompts = prompts or PROBES
    for text in prompts:
        ids = tokenizer(template.prompt([Message("user", text)]), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            a = reference(**ids).logits.float()
            b = candidate(**ids).logits.float()
            worst = max(worst, (a - b).abs().max().item())
            if not generate:
                equal += int(torch.allclose(a, b, atol=1e-3))
                continue
            ga = greedy_tokens(reference, ids, tokenizer, max_new_tokens)
            gb = greedy_tokens(candidate, ids, tokenizer, max_new_tokens)
        if ga == gb:
            equal += 1
        else:
            mismatches.append(f"{text!r}: {tokenizer.decode(ga)!r} vs {tokenizer.decode(gb)!r}")
    return Verification(worst, equal, len(prompts), mismatches)


def greedy_tokens(model: Any, ids: dict[str, Any], tokenizer: Any, n: int) -> list[int]:
    """Up to ``n`` greedy tokens after ``ids`` (the generation config's stop ids end it early)."""
    out = model.generate(**ids, max_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, ids["input_ids"].shape[1]:].tolist()
