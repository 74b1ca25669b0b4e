"""``tuneforge data inspect``: show examples exactly as training sees them, trained tokens highlighted."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from tuneforge.data.processors import Processed
from tuneforge.data.processors.sft import IGNORE

TRAINED_STYLE, MASKED_STYLE = "bold green", "dim"


def spans(labels: list[int]) -> list[tuple[int, int, bool]]:
    """Runs of consecutive tokens that are trained / not trained: (start, end, trained)."""
    out: list[tuple[int, int, bool]] = []
    for i, label in enumerate(labels):
        trained = label != IGNORE
        if out and out[-1][2] == trained:
            out[-1] = (out[-1][0], i + 1, trained)
        else:
            out.append((i, i + 1, trained))
    return out


def render_tokens(tokenizer: Any, ids: list[int], labels: list[int]) -> Text:
    """The decoded text with trained runs in green and masked runs dimmed (special tokens shown)."""
    text = Text()
    for start, end, trained in spans(labels):
        text.append(tokenizer.decode(ids[start:end], skip_special_tokens=False),
                    style=TRAINED_STYLE if trained else MASKED_STYLE)
    return text


def inspect_rows(processed: Processed, tokenizer: Any, n: int) -> Group:
    """Panels for the first ``n`` rows of any processed kind."""
    cols = processed.columns
    panels = []
    for i in range(min(n, len(processed))):
        if "labels" in cols:
            ids, labels = cols["input_ids"][i], cols["labels"][i]
            body = render_tokens(tokenizer, ids, labels)
            trained = sum(1 for x in labels if x != IGNORE)
            title = f"row {i}: {len(ids)} tokens, {trained} trained"
        else:
            prompt = cols["prompt_ids"][i]
            answers = [(k, cols[k][i]) for k in ("chosen_ids", "rejected_ids", "completion_ids") if k in cols]
            body = Text(tokenizer.decode(prompt, skip_special_tokens=False), style=MASKED_STYLE)
            for key, ans in answers:
                body.append(f"\n--- {key.removesuffix('_ids')} ({len(ans)} tokens, trained) ---\n", style="cyan")
                body.append(tokenizer.decode(ans, skip_special_tokens=False), style=TRAINED_STYLE)
            label = f", label={cols['label'][i]}" if "label" in cols else ""
            title = f"row {i}: prompt {len(prompt)} tokens{label}"
        panels.append(Panel(body, title=title, title_align="left"))
    legend = Text.assemble(("trained", TRAINED_STYLE), " / ", ("not trained (masked)", MASKED_STYLE))
    return Group(legend, *panels)
