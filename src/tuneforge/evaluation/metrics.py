"""Text metrics of docs/evaluation.md: BLEU-4, ROUGE-1/2/L, exact match; English and Chinese alike.

Tokenisation (the same for every n-gram metric): runs of CJK characters are segmented into words with
jieba; everything else is split into words (``\\w+``) and single punctuation marks. Case is kept. The
tokens are then handed, space-joined, to sacrebleu (``tokenize="none"``) and to rouge-score (with a
whitespace tokenizer), which do all the n-gram arithmetic.

- BLEU-4: sacrebleu's sentence BLEU (cumulative 1- to 4-gram precision, equal weights, brevity penalty,
  ``exp`` smoothing and effective order, sacrebleu's sentence-level defaults), averaged over examples.
- ROUGE-1, ROUGE-2, ROUGE-L: rouge-score F1, averaged over examples.
- exact match: the normalised prediction equals the normalised reference (normalisations configurable).

All scores are on a 0-100 scale. An empty prediction scores 0 on every metric (unless the reference is
empty too, which is an exact match).
"""

from __future__ import annotations

import functools
import logging
import re
import statistics
import string
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

#: CJK ideographs (with extensions and compatibility forms), segmented by jieba.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]+")
_WORD = re.compile(r"\w+|[^\w\s]")
NGRAM_METRICS = ("bleu4", "rouge1", "rouge2", "rougeL")


@functools.cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter on every run
    return jieba


def segment(text: str) -> list[str]:
    """Words of mixed English/Chinese text: jieba for CJK runs, words and punctuation elsewhere."""
    tokens: list[str] = []
    pos = 0
    for match in _CJK.finditer(text):
        tokens += _WORD.findall(text[pos:match.start()])
        tokens += [w for w in _jieba().lcut(match.group()) if w.strip()]
        pos = match.end()
    return tokens + _WORD.findall(text[pos:])


@functools.cache
def _bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="none", smooth_method="exp", effective_order=True)


def bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 (0-100) of one prediction against one reference, on segmented words."""
    pred, ref = segment(prediction), segment(reference)
    if not pred or not ref:
        return 100.0 if pred == ref else 0.0
    return float(_bleu().sentence_score(" ".join(pred), [" ".join(ref)]).score)


class _Whitespace:
    """rouge-score tokenizer for already segmented, space-joined text (its default drops non-ASCII)."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return text.split()


@functools.cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Whitespace())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 (0-100) on segmented words."""
    pred, ref = segment(prediction), segment(reference)
    if not pred or not ref:
        same = 100.0 if pred == ref else 0.0
        return {"rouge1": same, "rouge2": same, "rougeL": same}
    scores = _rouge().score(" ".join(ref), " ".join(pred))  # rouge-score takes (target, prediction)
    return {name: 100 * s.fmeasure for name, s in scores.items()}


_PUNCT = set(string.punctuation)
#: Normalisations for exact match, applied in this order.
NORMALIZERS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "punct": lambda s: "".join(c for c in s if c not in _PUNCT and not unicodedata.category(c).startswith("P")),
    "space": lambda s: " ".join(s.split()),
    "width": lambda s: unicodedata.normalize("NFKC", s),  # full-width letters and digits -> ASCII
}


def normalize(text: str, steps: Iterable[str]) -> str:
    """``text`` stripped, then each named normalisation applied (see :data:`NORMALIZERS`)."""
    text = text.strip()
    for name in steps:
        text = NORMALIZERS[name](text).strip()
    return text


def exact_match(prediction: str, reference: str, steps: Iterable[str] = ("width", "lower", "punct", "space")) -> float:
    """100 when the normalised texts are equal, else 0."""
    steps = tuple(steps)
    return 100.0 if normalize(prediction, steps) == normalize(reference, steps) else 0.0


#: Text metrics by the name ``evaluation.metrics`` uses; each gives one or more 0-100 scores.
TEXT_METRICS: dict[str, Callable[[str, str, tuple[str, ...]], dict[str, float]]] = {
    "bleu4": lambda p, r, _: {"bleu4": bleu4(p, r)},
    "rouge": lambda p, r, _: rouge(p, r),
    "exact_match": lambda p, r, steps: {"exact_match": exact_match(p, r, steps)},
}


def example_scores(prediction: str, reference: str, normalizers: Iterable[str],
                   metrics: Iterable[str] = tuple(TEXT_METRICS)) -> dict[str, float]:
    """The asked text metrics for one example (names of :data:`TEXT_METRICS`; others are ignored)."""
    steps = tuple(normalizers)
    out: dict[str, float] = {}
    for name in metrics:
        if name in TEXT_METRICS:
            out.update(TEXT_METRICS[name](prediction, reference, steps))
    return out


def corpus_scores(predictions: list[str], references: list[str],
                  normalizers: Iterable[str] = ("width", "lower", "punct", "space"),
                  metrics: Iterable[str] = tuple(TEXT_METRICS)) -> dict[str, float]:
    """Means over examples of the asked text metrics (0-100).

    Raises:
        ValueError: when the lists differ in length or are empty.
    """
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references, and at least one ({len(predictions)} vs "
                         f"{len(references)})")
    normalizers, metrics = tuple(normalizers), tuple(metrics)
    rows = [example_scores(p, r, normalizers, metrics) for p, r in zip(predictions, references, strict=True)]
    return {k: statistics.fmean(row[k] for row in rows) for k in rows[0]}
