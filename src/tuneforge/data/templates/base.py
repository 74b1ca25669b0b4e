"""A chat template and the split of a rendered conversation into prompt and trained spans."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from tuneforge.data.records import MODEL_ROLES, Message
from tuneforge.data.templates.jinja import compile_template, render

_TOOLS_PREAMBLE = ("You have access to the following tools:\n{tools}\n\n"
                   'To call a tool, reply with a JSON object: {{"name": <tool name>, "arguments": <arguments object>}}.')


class TemplateError(ValueError):
    """A template that cannot render a conversation, or renders it in a way we cannot split."""


@dataclass(frozen=True)
class Turn:
    """One prompt span followed by the answer the model is trained on.

    Attributes:
        prompt: Text before the answer (template markup, system, user and tool turns).
        answer: The answer through its end-of-turn token: the trained span.
        trained: False when the data masked this answer (``loss_weight: 0``); it is then context only.
    """

    prompt: str
    answer: str
    trained: bool = True


@dataclass
class ChatTemplate:
    """A Jinja chat template with what tuneforge needs to know about it.

    Attributes:
        name: ``auto`` (the tokenizer's own) or a registry name.
        source: The Jinja source (saved into the trained model's tokenizer config).
        special: Variables the template reads besides messages (bos_token, eos_token ...).
        eot: The string that ends an assistant turn (trained with the answer); None if the template has none.
        markers: Special tokens the template writes; each must be one token in the tokenizer.
        default_system: System prompt used when a record has none (None: the template's own behaviour).
    """

    name: str
    source: str
    special: dict[str, Any]
    eot: str | None
    markers: tuple[str, ...] = ()
    default_system: str | None = None
    supports_tools: bool = False
    supports_tool_calls: bool = False
    supports_reasoning: bool = False
    fast: bool = False
    fallbacks: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self._compiled = compile_template(self.source)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
               tools: list[dict[str, Any]] | None = None) -> str:
        """Render template-ready message dicts (see :meth:`to_dicts`)."""
        try:
            return render(self._compiled, messages, add_generation_prompt, tools, self.special)
        except Exception as exc:  # Jinja raises TemplateError, UndefinedError, TypeError ...
            raise TemplateError(f"chat template {self.name!r} failed to render: {exc}") from exc

    def to_dicts(self, messages: list[Message], system: str = "",
                 tools: str = "") -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Canonical messages -> the message dicts and tools list a Jinja template expects."""
        system = system or self.default_system or ""
        tool_list = _parse_tools(tools)
        if tool_list and not self.supports_tools:
            system = "\n\n".join(s for s in (system, _TOOLS_PREAMBLE.format(tools=_tool_lines(tool_list))) if s)
        out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        out += [self._dict(m) for m in messages]
        return out, (tool_list if self.supports_tools else None)

    def _dict(self, msg: Message) -> dict[str, Any]:
        if msg.role == "tool_call":
            if self.supports_tool_calls:
                return {"role": "assistant", "content": "", "tool_calls": _tool_calls(msg.content)}
            return {"role": "assistant", "content": msg.content}
        out: dict[str, Any] = {"role": msg.role, "content": msg.content}
        if msg.parts:
            out.update(msg.parts)
        if msg.reasoning:
            out.update(self._thinking(msg))
        return out

    def _thinking(self, msg: Message) -> dict[str, Any]:
        """Reasoning as the template expects it: its ``reasoning_content`` variable, else inline ``<think>``.

        The convention (``docs/data.md``, "Reasoning"): templates that read ``reasoning_content`` get it
        there and lay it out themselves; every other template gets ``<think>\n...\n</think>\n\n`` before
        the answer, the layout of the open reasoning models. Either way the thinking is part of the trained answer.
        """
        if self.supports_reasoning:
            return {"reasoning_content": msg.reasoning}
        return {"content": f"<think>\n{msg.reasoning}\n</think>\n\n{msg.content}"}

    def call_opening(self, messages: list[Message], name: str, system: str = "", tools: str = "") -> str:
        """The start of an answer that calls ``name``, as this template writes a tool call, up to the name.

        Rendering a call turn after ``messages`` and cutting its answer just past the function's name gives
        the opening (``{"name": "get_weather"`` for templates without tool-call support,
        ``<tool_call>\n{"name": "get_weather"`` for Qwen-style ones): written after the generation prompt,
        it makes the model complete that call. Raises TemplateError when the name does not appear.
        """
        call = Message("tool_call", json.dumps({"name": name, "arguments": {}}))
        turns, _ = self.turns([*messages, call], system, tools)
        answer, quoted = turns[-1].answer, json.dumps(name)
        at = answer.find(quoted)
        if at < 0:
            raise TemplateError(f"template {self.name!r} does not write the called function's name")
        return answer[: at + len(quoted)]

    def prompt(self, messages: list[Message], system: str = "", tools: str = "") -> str:
        """The text a model continues to answer ``messages`` (generation prompt added)."""
        dicts, tool_list = self.to_dicts(messages, system, tools)
        return self.render(dicts, add_generation_prompt=True, tools=tool_list)

    def turns(self, messages: list[Message], system: str = "", tools: str = "") -> tuple[list[Turn], str]:
        """Split a conversation into (prompt, answer) turns plus the untrained tail.

        The answer of turn *i* is what rendering the conversation through model message *i* adds after
        rendering it up to *i* with a generation prompt, cut after the end-of-turn token; text the template
        adds after that token (a newline) goes to the next prompt. Templates that render history
        differently from the last turn (some reasoning templates) fall back to one turn: the last answer.
        """
        turns, tail = self._turns(messages, system, tools)
        flags = [m.train is not False for m in messages if m.role in MODEL_ROLES]
        flags = flags[len(flags) - len(turns):]  # the one-turn fallback keeps only the last answer
        return [replace(t, trained=f) if not f else t for t, f in zip(turns, flags, strict=True)], tail

    def _turns(self, messages: list[Message], system: str, tools: str) -> tuple[list[Turn], str]:
        dicts, tool_list = self.to_dicts(messages, system, tools)
        first = len(dicts) - len(messages)
        model_at = [first + i for i, m in enumerate(messages) if m.role in MODEL_ROLES]
        if self.fast and _markable(dicts, model_at):
            split = self._split_marked(dicts, tool_list, model_at)
            if split is not None:
                return split
        try:
            return self._split(dicts, tool_list, model_at)
        except TemplateError:
            self.fallbacks += 1
            return self._split(dicts, tool_list, model_at[-1:])

    def _split_marked(self, dicts: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                      model_at: list[int]) -> tuple[list[Turn], str] | None:
        """The same split from one render: answers are wrapped in private-use marker characters.

        Used only for templates where :func:`check_fast_path` showed it equals :meth:`_split`; returns
        None (use the slow path) when the markers do not come back as expected.
        """
        marked = list(dicts)
        for i in model_at:
            marked[i] = {**dicts[i], "content": _OPEN + dicts[i]["content"] + _CLOSE}
        text = self.render(marked, tools=tools)
        turns, done, pos = [], 0, 0
        for _ in model_at:
            start = text.find(_OPEN, pos)
            close = text.find(_CLOSE, start + 1)
            if start < 0 or close < 0:
                return None
            end = close + 1 + self.answer_end(text[close + 1:], first=True)
            turns.append(Turn(text[done:start], text[start + 1:close] + text[close + 1:end]))
            done = pos = end
        if text.find(_OPEN, pos) >= 0 or _CLOSE in text[pos:]:
            return None
        return turns, text[done:]

    def _split(self, dicts: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               model_at: list[int]) -> tuple[list[Turn], str]:
        turns, done = [], ""
        full = ""
        for i in model_at:
            prompt = self.render(dicts[:i], add_generation_prompt=True, tools=tools)
            full = self.render(dicts[: i + 1], tools=tools)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise TemplateError(f"template {self.name!r} does not render conversations as growing prefixes")
            answer = full[len(prompt):]
            cut = self.answer_end(answer)
            turns.append(Turn(prompt[len(done):], answer[:cut]))
            done = prompt + answer[:cut]
        if model_at[-1] != len(dicts) - 1:
            full = self.render(dicts, tools=tools)
        return turns, full[len(done):] if full.startswith(done) else ""

    def answer_end(self, answer: str, first: bool = False) -> int:
        """Index just past the end-of-turn token in a rendered answer (its end if there is none).

        Args:
            answer: Text from the answer on.
            first: Take the first end token (text after the answer is the rest of the conversation)
                instead of the last (text is exactly the answer and what the template adds after it).
        """
        if self.eot:
            at = answer.find(self.eot) if first else answer.rfind(self.eot)
            if at >= 0:
                return at + len(self.eot)
        return 0 if first else len(answer)

    def check_fast_path(self) -> bool:
        """Enable one-render splitting when it equals the prefix split on probe conversations."""
        self.fast = False
        try:
            for messages, system, tools in _PROBES:
                dicts, tool_list = self.to_dicts(messages, system, tools)
                first = len(dicts) - len(messages)
                model_at = [first + i for i, m in enumerate(messages) if m.role in MODEL_ROLES]
                if self._split_marked(dicts, tool_list, model_at) != self._split(dicts, tool_list, model_at):
                    return False
        except TemplateError:
            return False
        self.fast = True
        return True


_OPEN, _CLOSE = "\ue000", "\ue001"  # Unicode private-use characters: never in real text or vocabularies

_PROBES: list[tuple[list[Message], str, str]] = [
    ([Message("user", "Hi"), Message("assistant", "Hello there.")], "", ""),
    ([Message("user", "Q1"), Message("assistant", "A1"), Message("user", "Q2"), Message("assistant", "A2")], "Be brief.", ""),
    ([Message("user", "Think"), Message("assistant", "<think>\nstep\n</think>\n\nDone."), Message("user", "More"),
      Message("assistant", "<think>x</think>Also.")], "", ""),
    ([Message("user", "Weather?"), Message("tool_call", '{"name": "w", "arguments": {"city": "Oslo"}}'),
      Message("tool", '{"t": 3}'), Message("assistant", "3 degrees.")], "",
     '[{"name": "w", "description": "weather", "parameters": {"type": "object", "properties": {}}}]'),
]


def _markable(dicts: list[dict[str, Any]], model_at: list[int]) -> bool:
    """One-render splitting is exact only for answers without surrounding whitespace (templates may trim)."""
    for i in model_at:
        content = dicts[i].get("content")
        if "reasoning_content" in dicts[i]:  # the markers would wrap the answer but not its thinking
            return False
        if not isinstance(content, str) or content != content.strip() or _OPEN in content or _CLOSE in content:
            return False
    return True


def _parse_tools(tools: str) -> list[dict[str, Any]]:
    if not tools:
        return []
    try:
        value = json.loads(tools)
    except json.JSONDecodeError:
        return [{"type": "function", "function": {"description": tools}}]
    items = value if isinstance(value, list) else [value]
    return [t if "function" in t or "type" in t else {"type": "function", "function": t}
            for t in items if isinstance(t, dict)]


def _tool_lines(tools: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)


def _tool_calls(content: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return [{"type": "function", "function": {"name": "", "arguments": content}}]
    calls = value if isinstance(value, list) else [value]
    return [{"type": "function", "function": {"name": c.get("name", ""), "arguments": c.get("arguments", {})}}
            for c in calls if isinstance(c, dict)]
