"""Chat templates: the tokenizer's own first, a registry for models without one.

Every template is Jinja (the format tokenizers store), so the template used to train is exactly the
one saved into the model's tokenizer config and used by chat, serve, eval and export (docs/data.md).
"""

from tuneforge.data.templates.base import ChatTemplate, TemplateError, Turn
from tuneforge.data.templates.builtin import TEMPLATES
from tuneforge.data.templates.resolve import resolve_template

__all__ = ["TEMPLATES", "ChatTemplate", "TemplateError", "Turn", "resolve_template"]
