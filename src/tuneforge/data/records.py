"""Canonical examples: every input format is parsed into these, every processor reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant", "tool_call", "tool"]
Kind = Literal["sft", "pt", "pairwise", "unpaired", "cls", "tagging"]

#: Roles the model produces (trained); the others are prompt side.
MODEL_ROLES = frozenset({"assistant", "tool_call"})
PROMPT_ROLES = frozenset({"user", "tool"})


@dataclass(slots=True)
class Message:
    """One turn.

    Attributes:
        role: system, user, assistant, tool_call (the model calls a tool) or tool (the tool's answer).
        content: The text. For ``tool_call`` a JSON string ``{"name": ..., "arguments": {...}}`` (or a list).
        parts: Optional structured pieces of a user turn (alpaca ``instruction`` / ``input``), used by
            templates that lay them out separately (``alpaca_zh``).
        reasoning: The thinking before an assistant answer (trained with it; see ``docs/data.md``).
        train: A per-message loss weight read from the data: False masks a model turn, None follows
            the role (model turns trained, the rest not).
    """

    role: Role
    content: str
    parts: dict[str, str] | None = None
    reasoning: str = ""
    train: bool | None = None


@dataclass(slots=True)
class Origin:
    """Where an example came from, for error messages and reports."""

    dataset: str
    file: str
    index: int
    line: int | None = None


@dataclass(slots=True)
class Example:
    """A parsed record.

    ``sft``: ``messages`` is the whole conversation ending with a model turn.
    ``pairwise``: ``messages`` is the prompt (ending with a user/tool turn); ``chosen`` / ``rejected`` answer it.
    ``unpaired`` (KTO): ``messages`` is the prompt, ``completion`` the answer and ``label`` desirable or not.
    ``pt``: ``text`` only.
    ``cls`` (sequence classification): ``text`` and its class in ``category``.
    ``tagging`` (token classification): ``words`` and one tag per word in ``tags``.
    """

    kind: Kind
    origin: Origin
    messages: list[Message] = field(default_factory=list)
    system: str = ""
    tools: str = ""
    chosen: Message | None = None
    rejected: Message | None = None
    completion: Message | None = None
    label: bool | None = None
    text: str = ""
    category: str = ""
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def turns(self) -> list[Message]:
        """Every message: the conversation, then the chosen, rejected or labelled answer where there is one."""
        return [*self.messages, *(m for m in (self.chosen, self.rejected, self.completion) if m is not None)]

    def texts(self) -> list[str]:
        """Every text in the example (for placeholder filling, duplicate and quality checks)."""
        out = [self.system, self.tools, self.text, " ".join(self.words)]
        out += [t for m in self.turns() for t in (m.reasoning, m.content)]
        return [t for t in out if t]

    def prompt_text(self) -> str:
        """The first user turn (or the text of a pt example): what 'leading phrase' checks look at."""
        if self.kind in ("pt", "cls"):
            return self.text
        if self.kind == "tagging":
            return " ".join(self.words)
        for m in self.messages:
            if m.role == "user":
                return m.content
        return ""

    def answer_text(self) -> str:
        """The trained answer(s) joined, for duplicate detection."""
        if self.kind == "sft":
            return "\n".join(m.content for m in self.messages if m.role in MODEL_ROLES)
        if self.kind == "cls":
            return self.category
        if self.kind == "tagging":
            return " ".join(self.tags)
        parts = [m.content for m in (self.chosen, self.rejected, self.completion) if m is not None]
        return "\n".join(parts) if parts else self.text
