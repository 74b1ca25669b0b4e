"""Templates for models whose tokenizer has no chat template (base models), by name.

Each is plain Jinja in the same dialect tokenizers store, so it can be saved into the trained
model's tokenizer config unchanged. ``eot`` ``None`` means "the tokenizer's eos_token".
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.utils.names import Registry


@dataclass(frozen=True)
class BuiltinTemplate:
    """A registered template: its Jinja source and the tokens it relies on."""

    source: str
    description: str
    eot: str | None = None
    markers: tuple[str, ...] = ()
    default_system: str | None = None


_CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_QWEN_TOOLS = (
    "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>"
)
_QWEN_TOOLS_END = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call>"
)
_QWEN = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' -%}"
    "{%- set rest = messages -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n' + system -}}"
    "{%- if tools -%}{{- '" + _QWEN_TOOLS + "' -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- '" + _QWEN_TOOLS_END + "' -}}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- for message in rest -%}"
    "{%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] -%}"
    "{{- '<|im_start|>assistant\\n' + message['content'] -}}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- if not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": '"
    " + (call['function']['arguments'] | tojson) + '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_LLAMA3 = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{%- set role = 'ipython' if message['role'] == 'tool' else message['role'] -%}"
    "{{- '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)


def _plain(user: str, user_with_input: str | None, tool: str, answer: str) -> str:
    """A plain-text layout (no special tokens): answers end with the tokenizer's eos_token."""
    if user_with_input is None:
        user_part = "{{- '" + user + "' -}}"
    else:
        user_part = (
            "{%- if message['instruction'] is defined and message['input'] -%}{{- '" + user_with_input + "' -}}"
            "{%- else -%}{{- '" + user + "' -}}{%- endif -%}"
        )
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{{- message['content'] + '\\n\\n' -}}"
        "{%- elif message['role'] == 'user' -%}" + user_part +
        "{%- elif message['role'] == 'tool' -%}{{- '" + tool + "' -}}"
        "{%- else -%}{{- '" + answer + "' + message['content'] + eos_token + '\\n\\n' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + answer + "' -}}{%- endif -%}"
    )


_DEFAULT = _plain("Human: ' + message['content'] + '\\n", None, "Observation: ' + message['content'] + '\\n",
                  "Assistant: ")
_ALPACA_ZH = _plain(
    "### 指令:\\n' + message['content'] + '\\n\\n",
    "### 指令:\\n' + message['instruction'] + '\\n\\n### 输入:\\n' + message['input'] + '\\n\\n",
    "### 观察:\\n' + message['content'] + '\\n\\n",
    "### 输出:\\n",
)
_ALPACA = _plain(
    "### Instruction:\\n' + message['content'] + '\\n\\n",
    "### Instruction:\\n' + message['instruction'] + '\\n\\n### Input:\\n' + message['input'] + '\\n\\n",
    "### Observation:\\n' + message['content'] + '\\n\\n",
    "### Response:\\n",
)

TEMPLATES: Registry[BuiltinTemplate] = Registry("template")
TEMPLATES.register("chatml", BuiltinTemplate(_CHATML, "ChatML: <|im_start|>role ... <|im_end|>", "<|im_end|>",
                                             ("<|im_start|>", "<|im_end|>")))
TEMPLATES.register("qwen", BuiltinTemplate(_QWEN, "Qwen2.5: ChatML with Qwen's default system prompt and "
                                           "<tool_call> tool calls", "<|im_end|>", ("<|im_start|>", "<|im_end|>")))
TEMPLATES.register("llama3", BuiltinTemplate(_LLAMA3, "Llama 3: header tokens, <|eot_id|> ends a turn", "<|eot_id|>",
                                             ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                              "<|eot_id|>")))
TEMPLATES.register("default", BuiltinTemplate(_DEFAULT, "Plain 'Human: ... / Assistant: ...' for base models"))
TEMPLATES.register("alpaca", BuiltinTemplate(_ALPACA, "Alpaca: ### Instruction / ### Input / ### Response"))
TEMPLATES.register("alpaca_zh", BuiltinTemplate(_ALPACA_ZH, "The Chinese instruction layout: ### 指令 / ### 输入 / ### 输出"))
