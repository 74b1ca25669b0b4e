"""Pick the template for a tokenizer: its own (``auto``) or a registered one."""

from __future__ import annotations

from typing import Any

from tuneforge.data.records import Message
from tuneforge.data.templates.base import ChatTemplate
from tuneforge.data.templates.builtin import TEMPLATES
from tuneforge.data.templates.jinja import template_variables
from tuneforge.utils.errors import ConfigError, Problem
from tuneforge.utils.names import UnknownNameError

_PROBE_ANSWER = "PROBE_ANSWER_7f3a"


def resolve_template(name: str, tokenizer: Any, system: str | None = None) -> ChatTemplate:
    """The template to train and chat with.

    Args:
        name: ``auto`` for the tokenizer's own chat template, else a registered name.
        tokenizer: A transformers tokenizer.
        system: Default system prompt for records without one.

    Raises:
        ConfigError: unknown name, or ``auto`` with a tokenizer that has no template.
    """
    special = special_tokens(tokenizer)
    if name == "auto":
        source = getattr(tokenizer, "chat_template", None)
        if not isinstance(source, str) or not source:
            raise ConfigError("the tokenizer has no chat template", [Problem(
                "template.name is 'auto' but this (base) model's tokenizer has no chat template",
                field="template.name", fix=f"choose one of: {', '.join(TEMPLATES.names())}")])
        return _build("auto", source, special, None, (), system, tokenizer)
    try:
        spec = TEMPLATES.get(name)
    except UnknownNameError as exc:
        raise ConfigError("unknown template", [Problem(str(exc), field="template.name",
                                                       fix="use 'auto' or a registered name")]) from None
    eot = spec.eot or special.get("eos_token")
    return _build(name, spec.source, special, eot, spec.markers, system or spec.default_system, tokenizer)


def special_tokens(tokenizer: Any) -> dict[str, Any]:
    """The variables ``apply_chat_template`` passes to templates (bos_token, eos_token ...)."""
    return {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}


def _build(name: str, source: str, special: dict[str, Any], eot: str | None, markers: tuple[str, ...],
           system: str | None, tokenizer: Any) -> ChatTemplate:
    names = template_variables(source)
    tpl = ChatTemplate(name, source, special, eot, markers, system, supports_tools="tools" in names,
                       supports_tool_calls="tool_calls" in source,
                       supports_reasoning="reasoning_content" in source)
    if tpl.eot is None:
        tpl.eot = detect_eot(tpl, tokenizer)
    tpl.check_fast_path()
    return tpl


def detect_eot(tpl: ChatTemplate, tokenizer: Any) -> str | None:
    """The token a template writes right after an answer: the longest added token the tail starts with."""
    dicts, _ = tpl.to_dicts([Message("user", "hello"), Message("assistant", _PROBE_ANSWER)], system="")
    rendered = tpl.render(dicts)
    at = rendered.rfind(_PROBE_ANSWER)
    if at < 0:
        return None
    tail = rendered[at + len(_PROBE_ANSWER):].lstrip(" ")
    added = sorted(getattr(tokenizer, "added_tokens_encoder", {}) or {}, key=len, reverse=True)
    hit = next((t for t in added if t and tail.startswith(t)), None)
    if hit is None and tokenizer.eos_token and tokenizer.eos_token in tail:
        hit = tokenizer.eos_token
    return hit
