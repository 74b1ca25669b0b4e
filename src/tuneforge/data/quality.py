"""Quality checks of docs/data.md: duplicates, leading-phrase diversity, lengths, data volume, control tokens.

Each check is a small pure function over canonical examples returning figures and warnings.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from tuneforge.data.loader import raw_keys
from tuneforge.data.records import Example
from tuneforge.utils.errors import Problem

#: Near duplicates: estimated Jaccard similarity of character 5-grams at or above this.
NEAR_THRESHOLD = 0.8
#: A leading phrase shared by at least this share (and count) of records is a warning (docs/data.md's example:
#: every record starting with "根据以下已知内容" teaches the model a spurious rule).
PHRASE_SHARE, PHRASE_MIN_COUNT = 0.3, 10
#: (stage, method) -> (minimum examples below which we warn, what to say). ``*`` matches any method.
MIN_DATA: dict[tuple[str, str], tuple[int, str]] = {
    ("sft", "full"): (1000, "full fine-tuning on little data overfits and forgets; under ~10,000 records "
                            "LoRA is advised (docs/advice.md)"),
    ("sft", "*"): (50, "this is very little data: expect memorisation; add examples or keep epochs high and "
                       "check answers on unseen questions"),
    ("pt", "*"): (100, "continued pre-training on so few documents barely changes the model"),
    ("dpo", "*"): (100, "preference training needs a few hundred pairs to move the model"),
    ("kto", "*"): (100, "KTO needs a few hundred labelled answers to move the model"),
    ("rm", "*"): (200, "a reward model trained on so few pairs will not generalise"),
}


@dataclass
class Duplicates:
    """Exact and near-duplicate counts with a few example pairs (indices into the examples)."""

    exact: int
    near: int
    pairs: list[tuple[int, int]]


def find_duplicates(examples: list[Example], threshold: float = NEAR_THRESHOLD) -> Duplicates:
    """Exact duplicates (same content) and near duplicates (MinHash-LSH over character 5-grams).

    Counts are of records that repeat an earlier one, so removing them leaves one of each.
    """
    first: dict[object, int] = {}
    exact_of: dict[int, int] = {}
    for i, ex in enumerate(examples):
        key = raw_keys(ex)
        if key in first:
            exact_of[i] = first[key]
        else:
            first[key] = i
    unique = [i for i in range(len(examples)) if i not in exact_of]
    near_pairs = _near_pairs([_norm(examples[i].prompt_text() + " " + examples[i].answer_text()) for i in unique],
                             threshold)
    near = sorted({unique[b] for _, b in near_pairs})
    pairs = [(b, a) for a, b in exact_of.items()][:5] + [(unique[a], unique[b]) for a, b in near_pairs[:5]]
    return Duplicates(len(exact_of), len(near), pairs)


_NUM_PERM, _BANDS = 64, 16
_rng = np.random.default_rng(0)
# Multiply-shift hashing (random odd 64-bit multipliers, arithmetic mod 2**64, top 32 bits kept).
_A = _rng.integers(0, 1 << 63, _NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _rng.integers(0, 1 << 63, _NUM_PERM, dtype=np.uint64)


def _norm(text: str) -> str:
    """Lower-case letters and digits only (CJK kept), first 2,000 characters."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text[:4000] if ch.isalnum())[:2000]


def _shingles(text: str) -> np.ndarray | None:
    """Sorted unique 32-bit hashes of the character 5-grams; None for texts shorter than 5."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < 5:
        return None
    n = len(codes) - 4
    shingles = codes[:n].copy()
    for k in range(1, 5):  # polynomial hash of each 5-gram (uint64 arithmetic wraps, which is fine here)
        shingles = shingles * np.uint64(1_000_003) + codes[k:k + n]
    return np.unique(shingles & np.uint64(0xFFFFFFFF))


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def _near_pairs(texts: list[str], threshold: float) -> list[tuple[int, int]]:
    """(earlier, later) index pairs whose Jaccard similarity of 5-gram sets reaches ``threshold``.

    MinHash bands (16 x 4 rows) only propose candidates (a pair at similarity 0.8 is proposed with
    probability > 0.999); each candidate is then verified with the exact Jaccard similarity.
    """
    sets = [_shingles(t) for t in texts]
    rows = _NUM_PERM // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, sh in enumerate(sets):
        if sh is not None:
            sig = ((np.outer(sh, _A) + _B) >> np.uint64(32)).min(axis=0)
            for band in range(_BANDS):
                buckets[(band, sig[band * rows:(band + 1) * rows].tobytes())].append(i)
    found: dict[int, int] = {}
    tried: set[tuple[int, int]] = set()
    for members in buckets.values():
        for later in members[1:]:
            if later in found:
                continue
            for earlier in members:
                if earlier >= later:
                    break
                if (earlier, later) in tried:
                    continue
                tried.add((earlier, later))
                if _jaccard(sets[earlier], sets[later]) >= threshold:  # type: ignore[arg-type]
                    found[later] = earlier
                    break
    return sorted((e, lt) for lt, e in found.items())


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def leading_phrase(text: str) -> str:
    """The opening of an instruction: first 6 characters of CJK text, else the first 3 words."""
    text = text.strip().lower()
    if _CJK.match(text):
        return "".join(text.split())[:6]
    return " ".join(re.findall(r"\w+", text)[:3])


def phrase_diversity(examples: list[Example]) -> tuple[list[dict[str, object]], list[Problem]]:
    """Top leading phrases with their shares, and a warning when one dominates."""
    counts = Counter(p for ex in examples if (p := leading_phrase(ex.prompt_text())))
    total = max(1, sum(counts.values()))
    top = [{"phrase": p, "count": n, "share": round(n / total, 3)} for p, n in counts.most_common(5)]
    warnings = [Problem(
        f"{t['share']:.0%} of records ({t['count']}) start with the same phrase {t['phrase']!r}: the model may "
        "learn that phrase as a rule instead of the task", field="instruction",
        fix="vary the wording of instructions (docs/data.md)", severity="warning")
        for t in top if float(t["share"]) >= PHRASE_SHARE and int(t["count"]) >= PHRASE_MIN_COUNT]  # type: ignore[arg-type]
    return top, warnings


def length_summary(lengths: list[int]) -> dict[str, float]:
    """min / p50 / p95 / max / mean of token lengths (zeros when there are none)."""
    if not lengths:
        return {"min": 0, "p50": 0, "p95": 0, "max": 0, "mean": 0.0}
    arr = np.asarray(lengths)
    return {"min": int(arr.min()), "p50": int(np.percentile(arr, 50)), "p95": int(np.percentile(arr, 95)),
            "max": int(arr.max()), "mean": round(float(arr.mean()), 1)}


def volume_warnings(n: int, stage: str, method: str) -> list[Problem]:
    """Too little data for the chosen stage and method."""
    rule = MIN_DATA.get((stage, method)) or MIN_DATA.get((stage, "*"))
    if stage in ("simpo", "orpo"):
        rule = MIN_DATA[("dpo", "*")]
    if rule is None or n >= rule[0]:
        return []
    return [Problem(f"only {n} examples for stage {stage} with method {method}: {rule[1]}", field="data.datasets",
                    fix=f"aim for at least {rule[0]} examples", severity="warning")]


#: Roles whose text is prose; tool calls and tool results are JSON by nature.
_PROSE_ROLES = frozenset({"system", "user", "assistant"})


def serialised_json_warnings(examples: list[Example], limit: int = 5) -> list[Problem]:
    """Messages whose whole text is a JSON object or array: usually structured content read as a string.

    A file whose messages hold ``[{"type": "text", ...}]`` parts in a format tuneforge does not expand,
    or a column holding a dumped dict, would otherwise be trained as JSON text.
    """
    hits = [(ex, m.role) for ex in examples for m in ex.turns()
            if m.role in _PROSE_ROLES and _looks_like_json(m.content)]
    out = [Problem(f"the {role} text is a serialised JSON structure; it will be trained as JSON text",
                   file=ex.origin.file, index=ex.origin.index, line=ex.origin.line, field="content",
                   fix="give the text itself (or content parts of type text); ignore this if the task is to "
                       "produce JSON", severity="warning") for ex, role in hits[:limit]]
    if len(hits) > limit:
        out.append(Problem(f"... {len(hits) - limit} more messages are serialised JSON", severity="warning"))
    return out


def _looks_like_json(text: str) -> bool:
    text = text.strip()
    if len(text) < 2 or (text[0], text[-1]) not in (("{", "}"), ("[", "]")):
        return False
    try:
        return isinstance(json.loads(text), dict | list)
    except json.JSONDecodeError:
        return False


def control_token_warnings(examples: list[Example], tokens: list[str], limit: int = 5) -> list[Problem]:
    """Records whose text contains a special token string (it would be read as a control token)."""
    if not tokens:
        return []
    pattern = re.compile("|".join(map(re.escape, sorted(tokens, key=len, reverse=True))))
    hits = [(ex, m.group(0)) for ex in examples for t in ex.texts() if (m := pattern.search(t))]
    seen: set[int] = set()
    out = []
    for ex, tok in hits:
        if id(ex) in seen:
            continue
        seen.add(id(ex))
        if len(out) < limit:
            out.append(Problem(f"the text contains the special token {tok!r}; it will be read as a control token",
                               file=ex.origin.file, index=ex.origin.index, line=ex.origin.line,
                               fix="remove or escape it", severity="warning"))
    if len(seen) > limit:
        out.append(Problem(f"... {len(seen) - limit} more records contain special token text", severity="warning"))
    return out
