"""SFT: conversations -> input_ids and labels where only assistant answers (with their end token) count."""

from __future__ import annotations

from tuneforge.data.processors.base import (
    PIPELINE_CHUNK,
    PROCESSORS,
    Processed,
    ProcessOptions,
    ProcessStats,
    chunks,
    pipelined,
)
from tuneforge.data.records import Example
from tuneforge.data.templates import TemplateError, Turn

IGNORE = -100


def process_sft(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Render with the template, tokenize turn by turn, mask, truncate at turn boundaries.

    Returns:
        Columns ``input_ids``, ``labels`` (``-100`` where not trained), ``length``.
    """
    cols: dict[str, list] = {"input_ids": [], "labels": [], "length": []}
    stats = ProcessStats(examples=len(examples))

    def assemble(rendered: list[tuple[list[Turn], str]], token_ids: list[list[int]], offset: int) -> None:
        ids = iter(token_ids)  # [prompt, answer, prompt, answer, ..., tail] per rendered example
        for j, (turns, _) in enumerate(rendered):
            if turns:
                pairs = [(next(ids), next(ids)) for _ in turns]
                _assemble(pairs, [t.trained for t in turns], next(ids), opts, stats, offset + j, cols)

    pipelined(chunks(examples, PIPELINE_CHUNK), lambda batch: _render(batch, opts, stats), _flat,
              opts.encode, assemble)
    stats.kept = len(cols["input_ids"])
    return Processed(cols, stats)


def _flat(rendered: list[tuple[list[Turn], str]]) -> list[str]:
    texts: list[str] = []
    for turns, tail in rendered:
        if turns:
            for turn in turns:
                texts += (turn.prompt, turn.answer)
            texts.append(tail)
    return texts


def _render(batch: list[Example], opts: ProcessOptions, stats: ProcessStats) -> list[tuple[list[Turn], str]]:
    out = []
    for ex in batch:
        try:
            out.append(opts.template.turns(ex.messages, ex.system, ex.tools))
        except TemplateError as exc:
            stats.template_failed(ex, exc)
            out.append(([], ""))
    return out


def _assemble(pairs: list[tuple[list[int], list[int]]], flags: list[bool], tail: list[int], opts: ProcessOptions,
              stats: ProcessStats, index: int, cols: dict[str, list]) -> None:
    """Keep whole turns from the start while they fit; cut the first answer only if nothing else fits.

    ``flags`` says per answer whether the data lets it be trained (``loss_weight: 0`` masks it).
    """
    if not opts.train_on_prompt and not any(flags[-1:] if opts.mask_history else flags):
        stats.drop("no trained answer (every assistant turn has loss_weight 0)")
        return
    full = sum(len(p) + len(a) for p, a in pairs) + len(tail)
    stats.lengths.append(full)
    kept = _fit(pairs, opts.max_length)
    if kept is None:
        stats.drop("prompt longer than max_length")
        return
    if len(kept) < len(pairs) or len(kept[-1][1]) < len(pairs[len(kept) - 1][1]):
        stats.truncated += 1
        stats.truncated_at.append(index)
        stats.turns_dropped += len(pairs) - len(kept)
    input_ids: list[int] = []
    labels: list[int] = []
    last = len(kept) - 1
    for k, (prompt, answer) in enumerate(kept):
        input_ids += prompt
        labels += prompt if opts.train_on_prompt else [IGNORE] * len(prompt)
        input_ids += answer
        trained = (not opts.mask_history or k == last) and flags[k]
        labels += answer if trained or opts.train_on_prompt else [IGNORE] * len(answer)
    if len(kept) == len(pairs) and len(input_ids) + len(tail) <= opts.max_length:
        input_ids += tail  # the template's text after the last answer (a newline): never trained
        labels += tail if opts.train_on_prompt else [IGNORE] * len(tail)
    cols["input_ids"].append(input_ids)
    cols["labels"].append(labels)
    cols["length"].append(len(input_ids))


def _fit(pairs: list[tuple[list[int], list[int]]], max_length: int) -> list[tuple[list[int], list[int]]] | None:
    """Turns that fit in ``max_length``; None when not even one answer token fits after the first prompt."""
    used, kept = 0, []
    for prompt, answer in pairs:
        if used + len(prompt) + len(answer) <= max_length:
            kept.append((prompt, answer))
            used += len(prompt) + len(answer)
            continue
        if not kept:
            room = max_length - len(prompt)
            return [(prompt, answer[:room])] if room > 0 else None
        break
    return kept


PROCESSORS.register("sft", process_sft)
