"""Pre-flight checks of a chat template against the tokenizer (the 'wrong template' silent failure)."""

from __future__ import annotations

from typing import Any

from tuneforge.data.records import Message
from tuneforge.data.templates.base import ChatTemplate, TemplateError
from tuneforge.utils.errors import Problem

_PROBE = [Message("user", "Hello"), Message("assistant", "Hi! How can I help?"), Message("user", "Thanks")]


def template_warnings(template: ChatTemplate, tokenizer: Any) -> list[Problem]:
    """Everything about ``template`` that would silently train the wrong thing with this tokenizer."""
    out = [_warn(f"template {template.name!r} writes {m!r}, which this tokenizer splits into {n} pieces: the "
                 "model cannot learn it as one control token",
                 "use template 'auto' (the tokenizer's own) or a template made for this model")
           for m in template.markers if (n := _pieces(tokenizer, m)) != 1]
    if template.eot is None:
        out.append(_warn(f"template {template.name!r} ends assistant turns without an end-of-turn token: the model "
                         "would never learn to stop", "choose a template whose answers end with a special token"))
    elif _pieces(tokenizer, template.eot) != 1:
        out.append(_warn(f"the end-of-turn text {template.eot!r} is not a single token in this tokenizer",
                         "choose a template made for this model"))
    elif template.eot != tokenizer.eos_token:
        out.append(_warn(f"answers end with {template.eot!r} but the tokenizer's eos_token is "
                         f"{tokenizer.eos_token!r}; tuneforge stops generation at both, other tools may not",
                         "keep it in mind when serving the model elsewhere (export writes both into "
                         "generation_config)"))
    out += _mismatch(template, tokenizer)
    return out


def _mismatch(template: ChatTemplate, tokenizer: Any) -> list[Problem]:
    own = getattr(tokenizer, "chat_template", None)
    if template.name == "auto" or not isinstance(own, str) or not own:
        return []
    try:
        ours = template.prompt(_PROBE)
        theirs = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in _PROBE],
                                               tokenize=False, add_generation_prompt=True)
    except (TemplateError, ValueError, TypeError):
        return []
    if ours == theirs:
        return []
    return [_warn(f"template {template.name!r} differs from the tokenizer's own chat template (ours: {ours[:80]!r}..., "
                  f"tokenizer's: {theirs[:80]!r}...); a chat model answers best in the format it was tuned with",
                  "use template.name: auto unless you mean to change the format; tuneforge saves the training "
                  "template into the trained model so chat and serve stay consistent")]


def _pieces(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _warn(message: str, fix: str) -> Problem:
    return Problem(message, field="template.name", fix=fix, severity="warning")
