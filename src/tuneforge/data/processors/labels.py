"""Classification: texts -> ids and a class id; tagged words -> ids and a tag id on each word's first token.

No chat template is applied: a classifier reads the text as it is, with the tokenizer's own special tokens
(BERT's [CLS] ... [SEP]; nothing for most decoders). The label ids come from ``ProcessOptions.labels``,
the run's label set (``label_set``); without one (``data check``) they are numbered in sorted order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tuneforge.data.processors.base import PROCESSORS, Processed, ProcessOptions, ProcessStats
from tuneforge.data.records import Example
from tuneforge.utils.errors import DataError, Problem

#: Label of positions that carry no tag (a word's later sub-tokens, special tokens): the loss skips them.
IGNORE = -100
#: A word of a script written without spaces (CJK): joined to its neighbours without a space.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def label_set(examples: Iterable[Example]) -> list[str]:
    """The classes of ``examples`` (categories, or tags), sorted: numerically when every one is an integer."""
    names = {ex.category for ex in examples if ex.kind == "cls"} | {
        t for ex in examples if ex.kind == "tagging" for t in ex.tags}
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def unknown_labels(examples: list[Example], labels: dict[str, int]) -> list[Problem]:
    """Every example whose class or tag the run was not trained on (the model has no output for it)."""
    out = []
    for ex in examples:
        seen = [ex.category] if ex.kind == "cls" else ex.tags
        new = sorted({t for t in seen if t not in labels})
        if new:
            out.append(Problem(f"label(s) {new} were not in the training data", file=ex.origin.file,
                               index=ex.origin.index, line=ex.origin.line,
                               field="label" if ex.kind == "cls" else "tags",
                               fix=f"use one of the run's labels {sorted(labels)}, or train with this class"))
    return out


def _ids(examples: list[Example], opts: ProcessOptions) -> dict[str, int]:
    labels = opts.labels or {name: i for i, name in enumerate(label_set(examples))}
    problems = unknown_labels(examples, labels)
    if problems:
        raise DataError("labels the model was not trained on", problems)
    return labels


def process_cls(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Columns ``input_ids``, ``labels`` (one class id per row) and ``length``; long texts are truncated."""
    labels = _ids(examples, opts)
    stats = ProcessStats(examples=len(examples))
    cols: dict[str, list] = {"input_ids": [], "labels": [], "length": []}
    encoded = opts.tokenizer([ex.text for ex in examples], add_special_tokens=True)["input_ids"]
    for i, (ex, ids) in enumerate(zip(examples, encoded, strict=True)):
        stats.lengths.append(len(ids))
        if len(ids) > opts.max_length:
            stats.truncated += 1
            stats.truncated_at.append(i)
            ids = _truncate(ids, opts)
        cols["input_ids"].append(ids)
        cols["labels"].append(labels[ex.category])
        cols["length"].append(len(ids))
    stats.kept = len(cols["input_ids"])
    return Processed(cols, stats)


def _truncate(ids: list[int], opts: ProcessOptions) -> list[int]:
    """Cut to ``max_length`` keeping a closing special token ([SEP]) where the tokenizer adds one."""
    last = ids[-1]
    if last in opts.tokenizer.all_special_ids:
        return ids[: opts.max_length - 1] + [last]
    return ids[: opts.max_length]


def word_pieces(words: list[str], tokenizer: object) -> list[list[int]]:
    """The token ids of each word as it stands in the sentence: words after the first get the space that
    separated them (byte-level BPE tokens carry it), except between words of unspaced scripts (CJK)."""
    texts = [w if i == 0 or (_UNSPACED.match(w[0]) and _UNSPACED.match(words[i - 1][-1])) else " " + w
             for i, w in enumerate(words)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]  # type: ignore[operator]


def process_tagging(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Columns ``input_ids``, ``labels`` (a tag id on each word's first token, -100 elsewhere) and ``length``.

    The tokenizer's special tokens (BERT's [CLS]/[SEP]) wrap the words, labelled -100. Words beyond
    ``max_length`` are cut off (counted as truncated).
    """
    labels = _ids(examples, opts)
    tok = opts.tokenizer
    head = tok("", add_special_tokens=True)["input_ids"]  # the special tokens that wrap every input
    opening = [i for i in head if i == getattr(tok, "cls_token_id", None) or i == getattr(tok, "bos_token_id", None)]
    closing = head[len(opening):]
    stats = ProcessStats(examples=len(examples))
    cols: dict[str, list] = {"input_ids": [], "labels": [], "length": []}
    room = opts.max_length - len(opening) - len(closing)
    for i, ex in enumerate(examples):
        ids, tags = [], []
        for piece, tag in zip(word_pieces(ex.words, tok), ex.tags, strict=True):
            piece = piece or [tok.unk_token_id or 0]  # a word the tokenizer drops entirely still gets a position
            ids += piece
            tags += [labels[tag]] + [IGNORE] * (len(piece) - 1)
        stats.lengths.append(len(ids) + len(opening) + len(closing))
        if len(ids) > room:
            stats.truncated += 1
            stats.truncated_at.append(i)
            ids, tags = ids[:room], tags[:room]
        cols["input_ids"].append(opening + ids + closing)
        cols["labels"].append([IGNORE] * len(opening) + tags + [IGNORE] * len(closing))
        cols["length"].append(len(opening) + len(ids) + len(closing))
    stats.kept = len(cols["input_ids"])
    return Processed(cols, stats)


PROCESSORS.register("cls", process_cls)
PROCESSORS.register("tagging", process_tagging)
