"""Write canonical examples as alpaca, sharegpt or OpenAI messages records (``tuneforge data convert``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tuneforge.data.records import Example, Message
from tuneforge.utils.errors import Problem
from tuneforge.utils.names import Registry

_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "tool_call": "function_call", "tool": "observation",
                  "system": "system"}


class ConvertError(ValueError):
    """An example that the target format cannot hold."""


def to_alpaca(ex: Example) -> dict[str, Any]:
    """Alpaca: the last user turn is the instruction, earlier turns become ``history``."""
    if ex.kind == "pt":
        return {"text": ex.text}
    if any(m.role in ("tool", "tool_call") for m in ex.messages):
        raise ConvertError("tool calls and observations cannot be written as alpaca; convert to sharegpt or messages")
    msgs = list(ex.messages)
    answer = msgs.pop() if ex.kind == "sft" else None
    user = msgs.pop() if msgs else Message("user", "")
    parts = user.parts or {"instruction": user.content, "input": ""}
    rec: dict[str, Any] = {"instruction": parts["instruction"], "input": parts.get("input", "")}
    if ex.kind == "sft":
        rec["output"] = answer.content if answer else ""
    elif ex.kind == "pairwise":
        rec["chosen"], rec["rejected"] = _content(ex.chosen), _content(ex.rejected)
    else:
        rec["output"], rec["kto_tag"] = _content(ex.completion), ex.label
    if ex.system:
        rec["system"] = ex.system
    if msgs:
        rec["history"] = [[msgs[i].content, msgs[i + 1].content] for i in range(0, len(msgs) - 1, 2)]
    return rec


def to_sharegpt(ex: Example) -> dict[str, Any]:
    """ShareGPT: ``conversations`` of {from, value}; answers of pairs in ``chosen`` / ``rejected``."""
    if ex.kind == "pt":
        return {"text": ex.text}
    turns = [*ex.messages, *([ex.completion] if ex.kind == "unpaired" and ex.completion else [])]
    rec: dict[str, Any] = {"conversations": [{"from": _SHAREGPT_ROLE[m.role], "value": m.content} for m in turns]}
    if ex.system:
        rec["system"] = ex.system
    if ex.tools:
        rec["tools"] = ex.tools
    if ex.kind == "pairwise":
        rec["chosen"] = {"from": "gpt", "value": _content(ex.chosen)}
        rec["rejected"] = {"from": "gpt", "value": _content(ex.rejected)}
    elif ex.kind == "unpaired":
        rec["kto_tag"] = ex.label
    return rec


def to_messages(ex: Example) -> dict[str, Any]:
    """OpenAI messages: system first, tool calls as ``tool_calls``, KTO label in ``label``."""
    if ex.kind == "pt":
        return {"text": ex.text}
    turns = [*ex.messages, *([ex.completion] if ex.kind == "unpaired" and ex.completion else [])]
    msgs = ([{"role": "system", "content": ex.system}] if ex.system else []) + [_openai(m) for m in turns]
    rec: dict[str, Any] = {"messages": msgs}
    if ex.tools:
        rec["tools"] = json.loads(ex.tools) if ex.tools.strip()[:1] in "[{" else ex.tools
    if ex.kind == "pairwise":
        rec["chosen"] = {"role": "assistant", "content": _content(ex.chosen)}
        rec["rejected"] = {"role": "assistant", "content": _content(ex.rejected)}
    elif ex.kind == "unpaired":
        rec["label"] = ex.label
    return rec


def _openai(m: Message) -> dict[str, Any]:
    if m.role != "tool_call":
        return {"role": m.role, "content": m.content}
    value = json.loads(m.content) if m.content.strip()[:1] in "[{" else {"name": "", "arguments": m.content}
    calls = value if isinstance(value, list) else [value]
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": c.get("name", ""),
                                          "arguments": json.dumps(c.get("arguments", {}), ensure_ascii=False)}}
        for c in calls]}


def _content(m: Message | None) -> str:
    return m.content if m is not None else ""


def _plain(ex: Example) -> None:
    """Reasoning and per-message loss weights (LLaMA-Factory v1) have no field in any target format."""
    turns = ex.turns()
    if any(m.reasoning for m in turns):
        raise ConvertError("reasoning parts cannot be written in this format (they would be lost); train on the "
                           "original file")
    if any(m.train is False for m in turns):
        raise ConvertError("loss_weight 0 (masked answers) cannot be written in this format (those answers would "
                           "be trained); train on the original file")


CONVERTERS: Registry[Callable[[Example], dict[str, Any]]] = Registry("output format")
CONVERTERS.register("alpaca", to_alpaca)
CONVERTERS.register("sharegpt", to_sharegpt)
CONVERTERS.register("messages", to_messages)


def convert_examples(examples: list[Example], target: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Convert every example; the ones the target cannot hold are reported, not dropped silently."""
    fn = CONVERTERS.get(target)
    out, problems = [], []
    for ex in examples:
        try:
            _plain(ex)
            out.append(fn(ex))
        except ConvertError as exc:
            problems.append(Problem(str(exc), file=ex.origin.file, index=ex.origin.index, line=ex.origin.line,
                                    fix="choose another --to format"))
    return out, problems
