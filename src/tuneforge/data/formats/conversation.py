"""The conversation family: ShareGPT (from/value) and OpenAI messages (role/content, tool_calls)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tuneforge.data.formats.common import as_bool, as_text, maybe_json, problem, tools_text
from tuneforge.data.records import MODEL_ROLES, Example, Message, Origin, Role
from tuneforge.utils.errors import Problem

if TYPE_CHECKING:
    from tuneforge.data.formats.spec import FormatSpec

_ROLE_OF_TAG = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
                "function_tag": "tool_call", "system_tag": "system"}
_ORDER_FIX = ("turns must alternate: user/observation, then assistant/function_call, and so on "
              "(after an optional system turn); merge or remove the out-of-order turn")


def parse(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """Parse a conversation record into an sft, pairwise or unpaired example."""
    cols, problems = spec.columns, []
    key = cols.get("messages", "conversations")
    turns = maybe_json(record.get(key))
    if key not in record:
        return [problem(origin, key, f"missing field '{key}'",
                        f"add '{key}' (the list of turns), or map it with columns: {{messages: ...}}")]
    if not isinstance(turns, list) or not turns:
        return [problem(origin, key, f"'{key}' must be a non-empty list of turns", "add the turns of the dialogue")]
    roles = _role_map(spec.tags)
    messages = [m for j, t in enumerate(turns) if (m := _message(t, f"{key}[{j}]", spec.tags, roles, origin, problems))]
    ex = Example("sft", origin, messages, system=as_text(record.get(cols.get("system", ""))),
                 tools=tools_text(record.get(cols.get("tools", ""))))
    offset = 0
    if messages and messages[0].role == "system":
        ex.system = ex.system or messages.pop(0).content
        offset = 1
    if problems:
        return problems
    _assemble(ex, record, cols, key, spec.tags, roles, problems, offset)
    return problems or ex


def _role_map(tags: dict[str, str]) -> dict[str, Role]:
    return {tags[t]: role for t, role in _ROLE_OF_TAG.items() if t in tags}  # type: ignore[misc]


def _message(turn: Any, where: str, tags: dict[str, str], roles: dict[str, Role], origin: Origin,
             problems: list[Problem]) -> Message | None:
    role_tag, content_tag = tags.get("role_tag", "from"), tags.get("content_tag", "value")
    if not isinstance(turn, dict):
        problems.append(problem(origin, where, f"a turn must be an object, got {type(turn).__name__}",
                                f'write it as {{"{role_tag}": ..., "{content_tag}": ...}}'))
        return None
    raw_role = turn.get(role_tag)
    role = roles.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        problems.append(problem(origin, f"{where}.{role_tag}", f"unknown role {raw_role!r}",
                                f"use one of: {', '.join(roles)} (or set tags: in the dataset spec)"))
        return None
    if turn.get("tool_calls"):  # OpenAI: an assistant turn that calls tools
        return Message("tool_call", _tool_calls_text(turn["tool_calls"]))
    content = as_text(turn.get(content_tag))
    if not content.strip() and role != "system":
        problems.append(problem(origin, f"{where}.{content_tag}", f"empty {_side(role)} turn",
                                "write the text of this turn, or remove the turn and its pair"))
    return Message(role, content)


def _tool_calls_text(calls: Any) -> str:
    """OpenAI tool_calls -> LLaMA-Factory's function_call JSON ({name, arguments} or a list of them)."""
    out = []
    for call in calls if isinstance(calls, list) else [calls]:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        args = maybe_json(fn.get("arguments", {}))
        out.append({"name": fn.get("name", ""), "arguments": args})
    return json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False)


def _side(role: str) -> str:
    return "assistant" if role in MODEL_ROLES else role


def _assemble(ex: Example, record: dict[str, Any], cols: dict[str, str], key: str, tags: dict[str, str],
              roles: dict[str, Role], problems: list[Problem], offset: int) -> None:
    """Decide the kind from the columns present and check the turn order for it."""
    origin = ex.origin
    chosen_key, rejected_key = cols.get("chosen"), cols.get("rejected")
    if chosen_key in record or rejected_key in record:
        ex.kind = "pairwise"
        ex.chosen = _answer_turn(record, chosen_key, tags, roles, origin, problems)
        ex.rejected = _answer_turn(record, rejected_key, tags, roles, origin, problems)
        _check_order(ex.messages, key, origin, problems, False, offset)
        return
    kto_key = cols.get("kto_tag")
    if kto_key in record:
        ex.kind = "unpaired"
        ex.label = as_bool(record[kto_key])
        if ex.label is None:
            problems.append(problem(origin, kto_key, f"KTO label must be true or false, got {record[kto_key]!r}",
                                    "write true (desirable) or false (undesirable)"))
        if ex.messages and ex.messages[-1].role in MODEL_ROLES:
            ex.completion = ex.messages.pop()
        else:
            problems.append(problem(origin, key, "the last turn must be the assistant answer being labelled",
                                    "end the conversation with the answer the label refers to"))
        _check_order(ex.messages, key, origin, problems, False, offset)
        return
    _check_order(ex.messages, key, origin, problems, True, offset)


def _answer_turn(record: dict[str, Any], key: str | None, tags: dict[str, str], roles: dict[str, Role],
                 origin: Origin, problems: list[Problem]) -> Message | None:
    """A chosen/rejected answer: a turn object, a list ending with one, or a plain string."""
    key = key or "chosen"
    value = maybe_json(record.get(key))
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        msg = _message(value, key, tags, roles, origin, problems)
    else:
        text = as_text(value)
        msg = Message("assistant", text)
        if not text.strip():
            problems.append(problem(origin, key, f"empty or missing '{key}' answer", "write the answer"))
    if msg is not None and msg.role not in MODEL_ROLES:
        problems.append(problem(origin, key, f"'{key}' must be an assistant turn, got role {msg.role!r}",
                                "use the assistant role for the answers"))
    return msg


def _check_order(messages: list[Message], key: str, origin: Origin, problems: list[Problem],
                 end_with_model: bool, offset: int) -> None:
    """Prompt-side and model-side turns alternate, starting with the prompt side; first violation only.

    ``offset`` is 1 when a leading system turn was taken out, so field paths point at the file's turns.
    """
    for j, msg in enumerate(messages):
        if msg.role == "system":
            problems.append(problem(origin, f"{key}[{j + offset}]", "a system turn is only allowed first",
                                    "move it to the start or into the system field"))
            return
        if (msg.role in MODEL_ROLES) != (j % 2 == 1):
            want = "an assistant/function_call" if j % 2 else "a user/observation"
            problems.append(problem(origin, f"{key}[{j + offset}]", f"wrong role order: expected {want} turn, "
                                    f"got {msg.role}", _ORDER_FIX))
            return
    if not messages:
        problems.append(problem(origin, key, "no user turn", "add at least one user turn"))
    elif end_with_model and messages[-1].role not in MODEL_ROLES:
        problems.append(problem(origin, f"{key}[{len(messages) - 1 + offset}]", "the conversation ends without an "
                                "assistant answer", "end with the assistant turn to train on, or remove the last turn"))
    elif not end_with_model and messages[-1].role in MODEL_ROLES:
        problems.append(problem(origin, f"{key}[{len(messages) - 1 + offset}]", "the prompt must end with a user turn "
                                "(the answers are in chosen/rejected)", "remove the trailing assistant turn"))
