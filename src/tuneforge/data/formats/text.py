"""The text family: pre-training documents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.data.formats.common import as_text, problem
from tuneforge.data.records import Example, Origin
from tuneforge.utils.errors import Problem

if TYPE_CHECKING:
    from tuneforge.data.formats.spec import FormatSpec


def parse(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """A document with one text field."""
    key = spec.columns.get("text", "text")
    if key not in record:
        return [problem(origin, key, f"missing field '{key}'", f"add '{key}', or map it with columns: {{text: ...}}")]
    text = as_text(record[key])
    if not text.strip():
        return [problem(origin, key, "empty text", "remove the record")]
    return Example("pt", origin, text=text)
