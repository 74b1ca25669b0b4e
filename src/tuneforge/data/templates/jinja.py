"""The one place that touches transformers' Jinja environment.

We render with transformers' own compiled environment (same filters, globals and whitespace rules
as ``apply_chat_template``) but call it directly: ``apply_chat_template`` re-validates and copies
its inputs on every call, which costs more than the rendering itself on short examples.
``tests/unit/test_templates.py`` checks that our renders equal ``apply_chat_template``'s, so a
change upstream fails a test instead of silently changing what is trained.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Template
from transformers.utils.chat_template_utils import _compile_jinja_template


def compile_template(source: str) -> Template:
    """Compile (cached upstream) a chat template source."""
    return _compile_jinja_template(source)


def template_variables(source: str) -> frozenset[str]:
    """Names a template reads (used to tell whether it supports ``tools`` or ``tool_calls``)."""
    from transformers.utils.chat_template_utils import _get_template_variables

    return _get_template_variables(source)


def render(compiled: Template, messages: list[dict[str, Any]], add_generation_prompt: bool,
           tools: list[dict[str, Any]] | None, special: dict[str, Any]) -> str:
    """Render ``messages`` as ``apply_chat_template(tokenize=False)`` would."""
    return compiled.render(messages=messages, tools=tools, documents=None,
                           add_generation_prompt=add_generation_prompt, **special)
