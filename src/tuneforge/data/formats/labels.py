"""The labelled families: a text with its class, and words with one tag each (docs/data.md, "Classification")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.data.formats.common import as_text, maybe_json, problem
from tuneforge.data.records import Example, Origin
from tuneforge.utils.errors import Problem

if TYPE_CHECKING:
    from tuneforge.data.formats.spec import FormatSpec


def label_text(value: Any) -> str:
    """A class label as text: strings stripped, integers and booleans as written (``1``, ``true``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, str)):
        return str(value).strip()
    return ""


def _columns(record: dict[str, Any], spec: FormatSpec, origin: Origin,
             roles: tuple[str, str]) -> tuple[list[str], list[Problem]]:
    """The record keys of two column roles, and a problem for each key the record lacks."""
    keys = [spec.columns.get(role, role) for role in roles]
    return keys, [problem(origin, k, f"missing field '{k}'", f"add '{k}', or map it with columns: {{{role}: ...}}")
                  for k, role in zip(keys, roles, strict=True) if k not in record]


def parse_classification(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """``{"text": ..., "label": ...}``: one text, one class (a string or an integer)."""
    (text_key, label_key), problems = _columns(record, spec, origin, ("text", "label"))
    if problems:
        return problems
    text, label = as_text(record[text_key]), label_text(record[label_key])
    if not text.strip():
        problems.append(problem(origin, text_key, "empty text", "remove the record or give it a text"))
    if not label:
        problems.append(problem(origin, label_key, f"label {record[label_key]!r} is not a class name",
                                "give a string or integer class, e.g. \"positive\" or 1"))
    return problems or Example("cls", origin, text=text, category=label)


def _sequence(value: Any) -> list[Any] | None:
    """A list, a JSON list stored in a CSV cell, or a whitespace-separated string; None otherwise."""
    value = maybe_json(value)
    if isinstance(value, str):
        return value.split()
    return value if isinstance(value, list) else None


def parse_tagging(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """``{"tokens": [...], "tags": [...]}``: words and one tag per word (NER's BIO tags, parts of speech)."""
    (words_key, tags_key), problems = _columns(record, spec, origin, ("tokens", "tags"))
    if problems:
        return problems
    words, tags = _sequence(record[words_key]), _sequence(record[tags_key])
    for key, value in ((words_key, words), (tags_key, tags)):
        if not value:
            problems.append(problem(origin, key, f"'{key}' must be a non-empty list",
                                    'give a list, e.g. ["Paris", "is", "big"], or a space-separated string'))
    if problems:
        return problems
    assert words is not None and tags is not None
    if len(words) != len(tags):
        return [problem(origin, tags_key, f"{len(tags)} tags for {len(words)} tokens",
                        "give exactly one tag per token")]
    words_text, tags_text = [as_text(w) for w in words], [label_text(t) for t in tags]
    empty = [i for i, (w, t) in enumerate(zip(words_text, tags_text, strict=True)) if not w.strip() or not t]
    if empty:
        return [problem(origin, tags_key if tags_text[empty[0]] == "" else words_key,
                        f"empty token or tag at position(s) {empty[:5]}", "every token and tag must be non-empty")]
    return Example("tagging", origin, words=words_text, tags=tags_text)
