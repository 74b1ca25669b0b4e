"""Pairwise (DPO, SimPO, ORPO, reward model) and unpaired (KTO) data -> TRL's tokenized columns.

Pairwise rows: ``prompt_ids``, ``chosen_ids``, ``rejected_ids``; unpaired rows: ``prompt_ids``,
``completion_ids``, ``label``. Answers end with the template's end-of-turn token, prompts end with
the generation prompt, exactly as chat renders them.
"""

from __future__ import annotations

from tuneforge.data.processors.base import PROCESSORS, Processed, ProcessOptions, ProcessStats, chunks
from tuneforge.data.records import Example, Message
from tuneforge.data.templates import TemplateError


def process_pairwise(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Tokenize preference pairs; identical pairs and over-long prompts are dropped and counted."""
    cols: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    stats = ProcessStats(examples=len(examples))
    for batch in chunks(examples):
        rendered = [_render(ex, [ex.chosen, ex.rejected], opts, stats) for ex in batch]
        ids = iter(opts.encode([t for r in rendered if r for t in r]))
        for j, texts in enumerate(rendered):
            if texts is None:
                continue
            prompt, chosen, rejected = next(ids), next(ids), next(ids)
            if chosen == rejected:
                stats.drop("chosen equals rejected")
                continue
            kept = _fit(prompt, [chosen, rejected], opts.max_length, stats, batch[j], j)
            if kept is not None:
                cols["prompt_ids"].append(prompt)
                cols["chosen_ids"].append(kept[0])
                cols["rejected_ids"].append(kept[1])
    stats.kept = len(cols["prompt_ids"])
    return Processed(cols, stats)


def process_unpaired(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Tokenize KTO examples (prompt, completion, desirable or not)."""
    cols: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "label": []}
    stats = ProcessStats(examples=len(examples))
    for batch in chunks(examples):
        rendered = [_render(ex, [ex.completion], opts, stats) for ex in batch]
        ids = iter(opts.encode([t for r in rendered if r for t in r]))
        for j, texts in enumerate(rendered):
            if texts is None:
                continue
            prompt, completion = next(ids), next(ids)
            kept = _fit(prompt, [completion], opts.max_length, stats, batch[j], j)
            if kept is not None:
                cols["prompt_ids"].append(prompt)
                cols["completion_ids"].append(kept[0])
                cols["label"].append(bool(batch[j].label))
    stats.kept = len(cols["prompt_ids"])
    return Processed(cols, stats)


def _render(ex: Example, answers: list[Message | None], opts: ProcessOptions,
            stats: ProcessStats) -> list[str] | None:
    """[prompt, answer, answer, ...] as rendered text; None (counted) when the template fails."""
    texts: list[str] = []
    try:
        for answer in answers:
            assert answer is not None, "parsed pairwise/unpaired examples always have their answers"
            turns, _ = opts.template.turns([*ex.messages, answer], ex.system, ex.tools)
            prompt = "".join(t.prompt + t.answer for t in turns[:-1]) + turns[-1].prompt
            if texts and prompt != texts[0]:
                raise TemplateError("the template renders the same prompt differently for different answers")
            texts = texts or [prompt]
            texts.append(turns[-1].answer)
    except TemplateError as exc:
        stats.template_failed(ex, exc)
        return None
    return texts


def _fit(prompt: list[int], answers: list[list[int]], max_length: int, stats: ProcessStats, ex: Example,
         index: int) -> list[list[int]] | None:
    """Cut answers so prompt + answer fits; drop (counted) when the prompt alone does not leave room."""
    full = len(prompt) + max(len(a) for a in answers)
    stats.lengths.append(full)
    if len(prompt) >= max_length:
        stats.drop("prompt longer than max_length")
        return None
    if full > max_length:
        stats.truncated += 1
        stats.truncated_at.append(index)
        return [a[: max_length - len(prompt)] for a in answers]
    return answers


PROCESSORS.register("pairwise", process_pairwise)
PROCESSORS.register("unpaired", process_unpaired)
