"""Message content given as a list of typed parts (OpenAI chat format, LLaMA-Factory v1 files).

OpenAI writes ``[{"type": "text", "text": "..."}]``; LLaMA-Factory v1 writes
``[{"type": "text", "value": "..."}]`` and adds ``reasoning`` and ``tool_call`` parts. The rules
(``docs/data.md``, "Content parts"):

- text parts are joined, in order, with a newline, into the message text;
- ``reasoning`` parts become the answer's thinking (rendered as the chat template expects it);
- ``tool_call`` parts become the message's tool calls, as OpenAI ``tool_calls`` do;
- ``tools`` parts (tool definitions, which LLaMA-Factory's converter puts in the system turn) become the
  record's tools;
- any other part (image, audio, video, file) is refused: tuneforge trains text models only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.formats.common import maybe_json, problem, tools_text
from tuneforge.data.records import Origin
from tuneforge.utils.errors import Problem

#: Keys that hold a text part's text: OpenAI ``text``, LLaMA-Factory v1 ``value``.
_TEXT_KEYS = ("text", "value")
#: Part types that carry text under another name.
_TEXT_TYPES = {"text", "input_text", "output_text"}
_REASONING_TYPES = {"reasoning", "thinking"}
_TOOL_CALL_TYPES = {"tool_call", "tool_calls"}


@dataclass
class Content:
    """What the parts of one message hold."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tools: str = ""


def is_parts(value: Any) -> bool:
    """A list of objects with a ``type``: content given as parts rather than a string."""
    return isinstance(value, list) and bool(value) and all(isinstance(p, dict) and "type" in p for p in value)


def read_parts(parts: list[dict[str, Any]], where: str, origin: Origin, problems: list[Problem]) -> Content:
    """Join the parts of one message; every unusable part becomes a problem naming its path and type."""
    out = Content()
    texts, thoughts = [], []
    for k, part in enumerate(parts):
        kind, path = str(part.get("type")), f"{where}[{k}]"
        value = _part_value(part)
        if kind in _TEXT_TYPES:
            texts.append(value if isinstance(value, str) else "")
        elif kind in _REASONING_TYPES:
            thoughts.append(value if isinstance(value, str) else "")
        elif kind in _TOOL_CALL_TYPES:
            out.tool_calls += _calls(value, path, origin, problems)
        elif kind == "tools":
            out.tools = tools_text(value)
        else:
            problems.append(problem(origin, f"{path}.type", f"content part of type {kind!r} is not text: "
                                    "multimodal training is not supported",
                                    "remove the part (or the record); tuneforge trains on text, reasoning and "
                                    "tool_call parts only"))
    out.text = "\n".join(texts)
    out.reasoning = "\n".join(thoughts)
    return out


def _part_value(part: dict[str, Any]) -> Any:
    for key in _TEXT_KEYS:
        if key in part:
            return part[key]
    return part.get(str(part.get("type")))


def _calls(value: Any, path: str, origin: Origin, problems: list[Problem]) -> list[dict[str, Any]]:
    """A tool_call part's value: ``{"name", "arguments"}`` (or a list of them), as JSON or an object."""
    value = maybe_json(value)
    calls = value if isinstance(value, list) else [value]
    good = [c for c in calls if isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"]]
    if len(good) != len(calls) or not good:
        problems.append(problem(origin, path, f"tool_call part is not a {{name, arguments}} object: {value!r:.80}",
                                'write it as {"name": "tool", "arguments": {...}}'))
    return [{"name": c["name"], "arguments": maybe_json(c.get("arguments", {}))} for c in good]


def calls_json(calls: list[dict[str, Any]]) -> str:
    """Tool calls as the canonical tool_call message content: one object, or a list of several."""
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
