"""The format registry and detection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tuneforge.data.formats import columns, conversation, labels, text
from tuneforge.data.records import Example, Origin
from tuneforge.utils.errors import Problem
from tuneforge.utils.names import Registry

Family = Literal["columns", "conversation", "conversation_pairs", "text", "classification", "tagging"]

#: Conversation tags, LLaMA-Factory names: which key holds the role/content and what each role is called.
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}


@dataclass(frozen=True)
class FormatSpec:
    """How to read one input format.

    Attributes:
        name: Registry name (``alpaca``, ``sharegpt`` ...).
        family: Which parser reads it.
        columns: Canonical column role -> record key.
        tags: Role/content tag names (conversation family).
        description: One line for ``tuneforge data formats`` and errors.
        detect: Predicate on the keys of a record (and the record) for auto-detection; None = never auto.
    """

    name: str
    family: Family
    columns: dict[str, str]
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    detect: Callable[[set[str], dict[str, Any]], bool] | None = None

    def with_overrides(self, cols: dict[str, str], tags: dict[str, str]) -> FormatSpec:
        """A copy with user/registry column and tag mappings applied on top of the preset."""
        return replace(self, columns={**self.columns, **cols}, tags={**self.tags, **tags})


def _first_turn(record: dict[str, Any], key: str) -> dict[str, Any]:
    turns = record.get(key)
    return turns[0] if isinstance(turns, list) and turns and isinstance(turns[0], dict) else {}


def _is_sharegpt(keys: set[str], record: dict[str, Any]) -> bool:
    key = "conversations" if "conversations" in keys else "messages"
    return key in keys and "from" in _first_turn(record, key)


def _is_openai(keys: set[str], record: dict[str, Any]) -> bool:
    key = "messages" if "messages" in keys else "conversations"
    return key in keys and "role" in _first_turn(record, key)


def _is_message_pairs(keys: set[str], record: dict[str, Any]) -> bool:
    return {"chosen_messages", "rejected_messages"} <= keys and "role" in _first_turn(record, "chosen_messages")


FORMATS: Registry[FormatSpec] = Registry("data format")
_PRESETS = [
    FormatSpec("sharegpt", "conversation",
               {"messages": "conversations", "system": "system", "tools": "tools", "chosen": "chosen",
                "rejected": "rejected", "kto_tag": "kto_tag"},
               "ShareGPT: conversations of {from, value}, roles human/gpt/system/function_call/observation",
               SHAREGPT_TAGS, _is_sharegpt),
    FormatSpec("messages", "conversation",
               {"messages": "messages", "system": "system", "tools": "tools", "chosen": "chosen",
                "rejected": "rejected", "kto_tag": "label"},
               "OpenAI messages: {role, content}, roles system/user/assistant/tool, with tool_calls",
               OPENAI_TAGS, _is_openai),
    FormatSpec("message_pairs", "conversation_pairs",
               {"chosen_messages": "chosen_messages", "rejected_messages": "rejected_messages", "tools": "tools"},
               "Preference as two OpenAI conversations (LLaMA-Factory v1): chosen_messages, rejected_messages",
               OPENAI_TAGS, _is_message_pairs),
    FormatSpec("dialogue", "conversation", {"messages": "conversations", "system": "system"},
               "Dialogue: conversations of {from: human|gpt, value} (ShareGPT under another name)", SHAREGPT_TAGS),
    FormatSpec("alpaca", "columns",
               {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                "system": "system", "tools": "tools", "chosen": "chosen", "rejected": "rejected",
                "kto_tag": "kto_tag"},
               "Alpaca: instruction, input, output (+ system, history; chosen/rejected; kto_tag)",
               detect=lambda keys, _: "instruction" in keys),
    FormatSpec("preference_qa", "columns",
               {"prompt": "question", "chosen": "positive_answer", "rejected": "negative_answer", "system": "system"},
               "Seed preference pairs: question, positive_answer, negative_answer",
               detect=lambda keys, _: {"question", "positive_answer", "negative_answer"} <= keys),
    FormatSpec("code", "columns", {"prompt": "problem", "response": "solution", "system": "system"},
               "Code: problem, solution", detect=lambda keys, _: {"problem", "solution"} <= keys),
    FormatSpec("qa", "columns", {"prompt": "question", "response": "answer", "system": "system"},
               "Question answering: question, answer", detect=lambda keys, _: {"question", "answer"} <= keys),
    FormatSpec("classification", "classification", {"text": "text", "label": "label"},
               "Sequence classification: text, label (a class name or integer)",
               detect=lambda keys, _: {"text", "label"} <= keys),
    FormatSpec("tagging", "tagging", {"tokens": "tokens", "tags": "tags"},
               "Token classification: tokens (words) and tags (one per word, e.g. BIO)",
               detect=lambda keys, _: {"tokens", "tags"} <= keys),
    FormatSpec("text", "text", {"text": "text"}, "Pre-training text: a 'text' field, or .txt lines",
               detect=lambda keys, _: "text" in keys),
]
for _spec in _PRESETS:
    FORMATS.register(_spec.name, _spec)

_PARSERS: dict[Family, Callable[[dict[str, Any], FormatSpec, Origin], Example | list[Problem]]] = {
    "columns": columns.parse,
    "conversation": conversation.parse,
    "conversation_pairs": conversation.parse_pairs,
    "text": text.parse,
    "classification": labels.parse_classification,
    "tagging": labels.parse_tagging,
}


def detect_format(records: list[dict[str, Any]]) -> FormatSpec | None:
    """The preset whose detector accepts most of the first records; None when none does."""
    votes: dict[str, int] = {}
    for record in records[:20]:
        keys = set(record)
        for name, spec in FORMATS.items():
            if spec.detect is not None and spec.detect(keys, record):
                votes[name] = votes.get(name, 0) + 1
                break
    if not votes:
        return None
    return FORMATS.get(max(votes, key=lambda n: votes[n]))


def parse_record(record: dict[str, Any], spec: FormatSpec, origin: Origin) -> Example | list[Problem]:
    """Parse one raw record with ``spec``; returns the example or every problem in it."""
    return _PARSERS[spec.family](record, spec, origin)
