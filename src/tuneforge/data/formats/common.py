"""Helpers shared by the format parsers."""

from __future__ import annotations

import json
from typing import Any

from tuneforge.data.records import Origin
from tuneforge.utils.errors import Problem

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def problem(origin: Origin, field: str, message: str, fix: str) -> Problem:
    """A problem located at one record of one file."""
    return Problem(message, file=origin.file, index=origin.index, line=origin.line, field=field, fix=fix)


def as_text(value: Any) -> str:
    """Strings as they are, None as empty, structured values as JSON (tool calls, tool results)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def maybe_json(value: Any) -> Any:
    """Decode JSON-looking strings (lists/objects stored in CSV cells); other values unchanged."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def as_bool(value: Any) -> bool | None:
    """KTO tags: booleans, 0/1, or 'true'/'false' strings (CSV); None when not a recognisable flag."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return None


def tools_text(value: Any) -> str:
    """Tool definitions as a JSON string (the tools column may hold a string or a list)."""
    value = maybe_json(value)
    if value in (None, "", []):
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
