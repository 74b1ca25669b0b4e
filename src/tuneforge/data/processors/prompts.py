"""Prompts with reference answers, for the stages that sample their own answers (ppo, grpo).

Rows: ``prompt`` (the rendered text a model continues, generation prompt included), ``prompt_ids`` and
``answer`` (the reference answer of the record, given to reward functions such as exact match).
"""

from __future__ import annotations

from tuneforge.data.processors.base import Processed, ProcessOptions, ProcessStats, chunks
from tuneforge.data.records import Example
from tuneforge.data.templates import TemplateError


def process_prompts(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Render and tokenize each example's prompt; prompts that leave no room to answer are dropped (counted)."""
    cols: dict[str, list] = {"prompt": [], "prompt_ids": [], "answer": []}
    stats = ProcessStats(examples=len(examples))
    for batch in chunks(examples):
        texts: list[tuple[str, str]] = []
        for ex in batch:
            try:
                texts.append((opts.template.prompt(ex.messages[:-1], ex.system, ex.tools), ex.messages[-1].content))
            except TemplateError as exc:
                stats.template_failed(ex, exc)
        for (prompt, answer), ids in zip(texts, opts.encode([t for t, _ in texts]), strict=True):
            stats.lengths.append(len(ids))
            if len(ids) >= opts.max_length:
                stats.drop("prompt longer than max_length")
                continue
            cols["prompt"].append(prompt)
            cols["prompt_ids"].append(ids)
            cols["answer"].append(answer)
    stats.kept = len(cols["prompt"])
    return Processed(cols, stats)
