"""The conversation family: ShareGPT (from/value) and OpenAI messages (role/content, tool_calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.data.formats.common import as_bool, as_text, maybe_json, problem, tools_text
from tuneforge.data.formats.parts import Content, calls_json, is_parts, read_parts
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
    tools = [tools_text(record.get(cols.get("tools", "")))]
    messages = [m for j, t in enumerate(turns)
                if (m := _message(t, f"{key}[{j}]", spec.tags, roles, origin, problems, tools))]
    ex = Example("sft", origin, messages, system=as_text(record.get(cols.get("system", ""))),
                 tools=next((t for t in tools if t), ""))
    system, offset = _leading_system(messages)
    ex.system = ex.system or system
    if problems:
        return problems
    _assemble(ex, record, cols, key, spec.tags, roles, problems, offset)
    return problems or ex


def _leading_system(messages: list[Message]) -> tuple[str, int]:
    """Take a leading system turn out of ``messages``: its text, and 1 (the turns' offset in the file) or 0."""
    if messages and messages[0].role == "system":
        return messages.pop(0).content, 1
    return "", 0


def _role_map(tags: dict[str, str]) -> dict[str, Role]:
    return {tags[t]: role for t, role in _ROLE_OF_TAG.items() if t in tags}  # type: ignore[misc]


def _message(turn: Any, where: str, tags: dict[str, str], roles: dict[str, Role], origin: Origin,
             problems: list[Problem], tools: list[str] | None = None) -> Message | None:
    """One turn -> a canonical message; tool definitions found in its content parts go to ``tools``."""
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
    content, raw, known = Content(), turn.get(content_tag), len(problems)
    parts = maybe_json(raw)  # CSV cells hold parts as JSON text
    if is_parts(parts):
        content = read_parts(parts, f"{where}.{content_tag}", origin, problems)
        if content.tools and tools is not None:
            tools.append(content.tools)
    else:
        content.text = as_text(raw)
    if turn.get("tool_calls"):  # OpenAI: an assistant turn that calls tools
        content.tool_calls += _openai_calls(turn["tool_calls"])
    train = _loss_weight(turn, where, role, origin, problems)
    if content.tool_calls:
        return _tool_call_message(content, where, content_tag, train, origin, problems)
    if not content.text.strip() and role != "system" and len(problems) == known:  # unusable parts said it
        problems.append(problem(origin, f"{where}.{content_tag}", f"empty {_side(role)} turn",
                                "write the text of this turn, or remove the turn and its pair"))
    return Message(role, content.text, reasoning=content.reasoning if role in MODEL_ROLES else "", train=train)


def _tool_call_message(content: Content, where: str, content_tag: str, train: bool | None, origin: Origin,
                       problems: list[Problem]) -> Message:
    """A turn that calls tools; text beside the calls has no place in the canonical record, so it is refused."""
    if content.text.strip():
        problems.append(problem(origin, f"{where}.{content_tag}", "a turn with tool calls also has text, which "
                                "would be dropped", "move the text into its own assistant turn before the "
                                "call, or into a reasoning part"))
    return Message("tool_call", calls_json(content.tool_calls), reasoning=content.reasoning, train=train)


def _loss_weight(turn: dict[str, Any], where: str, role: Role, origin: Origin,
                 problems: list[Problem]) -> bool | None:
    """LLaMA-Factory v1 ``loss_weight``: 0 masks a model turn, 1 trains it; nothing else is supported."""
    if "loss_weight" not in turn:
        return None
    weight = turn["loss_weight"]
    path = f"{where}.loss_weight"
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight not in (0, 1):
        problems.append(problem(origin, path, f"loss_weight {weight!r} is not supported: tuneforge trains a "
                                "message fully or not at all", "use 1 (trained) or 0 (masked)"))
        return None
    if weight == 1 and role not in MODEL_ROLES:
        problems.append(problem(origin, path, f"loss_weight 1 on a {role} turn: only assistant turns are trained "
                                "per message", "use 0 here, or set template.train_on_prompt: true to train "
                                "every prompt token"))
        return None
    return bool(weight)


def _openai_calls(calls: Any) -> list[dict[str, Any]]:
    """OpenAI tool_calls -> LLaMA-Factory's function_call objects ({name, arguments})."""
    out = []
    for call in calls if isinstance(calls, list) else [calls]:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        out.append({"name": fn.get("name", ""), "arguments": maybe_json(fn.get("arguments", {}))})
    return out


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


def parse_pairs(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """LLaMA-Factory v1 preference records: two whole conversations that differ only in the last answer.

    The shared turns become the prompt; the last turn of ``chosen_messages`` and of ``rejected_messages``
    become the chosen and rejected answers. Conversations whose earlier turns differ are refused: a pair
    must answer the same prompt.
    """
    cols, problems = spec.columns, []
    sides = {}
    tools = [tools_text(record.get(cols.get("tools", "")))]
    roles = _role_map(spec.tags)
    for side in ("chosen", "rejected"):
        key = cols.get(f"{side}_messages", f"{side}_messages")
        turns = maybe_json(record.get(key))
        if not isinstance(turns, list) or len(turns) < 2:
            problems.append(problem(origin, key, f"'{key}' must list the prompt turns and the {side} answer",
                                    f"write '{key}' as [..., user turn, {side} assistant turn]"))
            continue
        sides[side] = (key, [m for j, t in enumerate(turns)
                             if (m := _message(t, f"{key}[{j}]", spec.tags, roles, origin, problems, tools))])
    if problems or len(sides) < 2:
        return problems
    (chosen_key, chosen), (rejected_key, rejected) = sides["chosen"], sides["rejected"]
    if [(m.role, m.content) for m in chosen[:-1]] != [(m.role, m.content) for m in rejected[:-1]]:
        return [problem(origin, rejected_key, "the turns before the last differ between the chosen and rejected "
                        "conversations", "both conversations must share the prompt and differ only in the answer")]
    ex = Example("pairwise", origin, chosen[:-1], tools=next((t for t in tools if t), ""))
    ex.system, offset = _leading_system(ex.messages)
    for side, key, msg in (("chosen", chosen_key, chosen[-1]), ("rejected", rejected_key, rejected[-1])):
        if msg.role not in MODEL_ROLES:
            problems.append(problem(origin, f"{key}[{len(chosen) - 1}]", f"the last turn must be the {side} "
                                    f"assistant answer, got role {msg.role!r}", "end with the assistant answer"))
        setattr(ex, side, msg)
    _check_order(ex.messages, chosen_key, origin, problems, False, offset)
    return problems or ex
