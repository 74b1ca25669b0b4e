"""``{{name}}``-style placeholders (LLaMA-Factory's identity data) filled from ``data.placeholders``."""

from __future__ import annotations

import re
from collections import Counter

from tuneforge.data.records import Example

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def fill_text(text: str, values: dict[str, str], unfilled: Counter[str]) -> str:
    """Replace known placeholders in ``text``; count the names left without a value."""
    if "{{" not in text:  # fast path: almost every text has none
        return text

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        unfilled[key] += 1
        return match.group(0)

    return PLACEHOLDER.sub(sub, text)


def fill_example(ex: Example, values: dict[str, str]) -> set[str]:
    """Fill every text of an example in place; returns the placeholder names left without a value."""
    unfilled: Counter[str] = Counter()
    ex.system = fill_text(ex.system, values, unfilled)
    ex.text = fill_text(ex.text, values, unfilled)
    for msg in ex.turns():
        msg.content = fill_text(msg.content, values, unfilled)
        msg.reasoning = fill_text(msg.reasoning, values, unfilled)
        if msg.parts:
            msg.parts = {k: fill_text(v, values, unfilled) for k, v in msg.parts.items()}
    return set(unfilled)
