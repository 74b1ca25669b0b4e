"""Reading a tool call back out of a model's answer, for ``tools`` in chat requests.

The chat template decides how tools are offered: templates with a ``tools`` variable lay them out
themselves (Qwen, Llama 3.1 ...), the others get tuneforge's instruction to reply with a JSON object
``{"name": ..., "arguments": {...}}`` (``data/templates/base.py``). Models answer a call in one of these
shapes, all recognised here:

- the whole answer is such an object, or a list of them (optionally in a ```json fence);
- one or more ``<tool_call>{...}</tool_call>`` blocks (Hermes/Qwen style), with text around them.

Only names of the offered tools count: anything else stays a text answer.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
#: How a tool-call answer starts; a stream holds text back while its start looks like one of these.
CALL_STARTS = ("{", "[", "<tool_call>", "```")


def parse_tool_calls(text: str, names: set[str]) -> list[dict[str, Any]] | None:
    """OpenAI ``tool_calls`` found in ``text`` (each with a fresh id), or None when it is a text answer."""
    tagged = _TAGGED.findall(text)
    candidates = tagged or [_unfenced(text.strip())]
    calls: list[dict[str, Any]] = []
    for raw in candidates:
        calls += _calls(raw)
    if not calls or any(c.get("name") not in names for c in calls):
        return None
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"], "arguments": _arguments(c)}} for c in calls]


def may_be_call(text: str) -> bool:
    """Whether an answer that starts with ``text`` may still turn out to be a tool call."""
    head = text.lstrip()
    return any(head.startswith(s) or s.startswith(head) for s in CALL_STARTS) if head else True


def _unfenced(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _calls(raw: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return []
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in items):
        return []
    return items


def _arguments(call: dict[str, Any]) -> str:
    """OpenAI sends arguments as a JSON string; models write an object (``arguments`` or ``parameters``)."""
    args = call.get("arguments", call.get("parameters", {}))
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
