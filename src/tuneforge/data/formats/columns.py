"""The column family: alpaca and every format with one prompt field and one answer field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.data.formats.common import as_bool, as_text, maybe_json, problem, tools_text
from tuneforge.data.records import Example, Message, Origin
from tuneforge.utils.errors import Problem

if TYPE_CHECKING:
    from tuneforge.data.formats.spec import FormatSpec


def parse(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """Parse an alpaca-like record into an sft, pairwise or unpaired example."""
    cols = spec.columns
    problems: list[Problem] = []
    messages = _history(record, cols.get("history"), origin, problems)
    user = _user_turn(record, cols, origin, problems)
    if user is not None:
        messages.append(user)
    base = Example("sft", origin, messages, system=as_text(record.get(cols.get("system", ""))),
                   tools=tools_text(record.get(cols.get("tools", ""))))
    chosen_key, rejected_key = cols.get("chosen"), cols.get("rejected")
    if chosen_key in record or rejected_key in record:
        _pairwise(base, record, chosen_key, rejected_key, origin, problems)
    elif cols.get("kto_tag") in record:
        _unpaired(base, record, cols, origin, problems)
    else:
        answer = _answer(record, cols.get("response"), origin, problems)
        if answer is not None:
            messages.append(Message("assistant", answer))
    return problems or base


def _user_turn(record: dict[str, Any], cols: dict[str, str], origin: Origin,
               problems: list[Problem]) -> Message | None:
    key = cols.get("prompt", "instruction")
    if key not in record:
        problems.append(problem(origin, key, f"missing field '{key}'",
                                f"add '{key}' (the instruction) or map another column to it with columns: {{prompt: ...}}"))
        return None
    instruction = as_text(record[key])
    query = as_text(record.get(cols.get("query", ""), ""))
    if not instruction.strip() and not query.strip():
        problems.append(problem(origin, key, f"empty '{key}'", "write the instruction, or remove the record"))
        return None
    content = f"{instruction}\n{query}" if instruction and query else instruction or query
    return Message("user", content, {"instruction": instruction, "input": query})


def _answer(record: dict[str, Any], key: str | None, origin: Origin, problems: list[Problem]) -> str | None:
    key = key or "output"
    if key not in record:
        problems.append(problem(origin, key, f"missing field '{key}'",
                                f"add '{key}' (the answer), or map it with columns: {{response: ...}}"))
        return None
    answer = as_text(record[key])
    if not answer.strip():
        problems.append(problem(origin, key, "empty answer: an assistant turn must have text",
                                "write the answer, or remove the record"))
        return None
    return answer


def _history(record: dict[str, Any], key: str | None, origin: Origin, problems: list[Problem]) -> list[Message]:
    """Alpaca history: a list of [instruction, answer] pairs before the current turn."""
    value = maybe_json(record.get(key)) if key else None
    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        problems.append(problem(origin, key or "history", "history must be a list of [question, answer] pairs",
                                'write it as [["q1", "a1"], ["q2", "a2"]]'))
        return []
    out: list[Message] = []
    for j, pair in enumerate(value):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            problems.append(problem(origin, f"{key}[{j}]", "each history item must be a [question, answer] pair",
                                    'write it as ["question", "answer"]'))
            continue
        if not pair[1].strip():
            problems.append(problem(origin, f"{key}[{j}][1]", "empty answer in history", "fill it in or drop the pair"))
        out += [Message("user", pair[0]), Message("assistant", pair[1])]
    return out


def _pairwise(ex: Example, record: dict[str, Any], chosen_key: str | None, rejected_key: str | None,
              origin: Origin, problems: list[Problem]) -> None:
    ex.kind = "pairwise"
    for key in (chosen_key, rejected_key):
        answer = _answer(record, key, origin, problems)
        if answer is not None:
            setattr(ex, "chosen" if key == chosen_key else "rejected", Message("assistant", answer))


def _unpaired(ex: Example, record: dict[str, Any], cols: dict[str, str], origin: Origin,
              problems: list[Problem]) -> None:
    ex.kind = "unpaired"
    key = cols["kto_tag"]
    ex.label = as_bool(record[key])
    if ex.label is None:
        problems.append(problem(origin, key, f"KTO tag must be true or false, got {record[key]!r}",
                                "write true (desirable answer) or false (undesirable answer)"))
    answer = _answer(record, cols.get("response"), origin, problems)
    if answer is not None:
        ex.completion = Message("assistant", answer)
