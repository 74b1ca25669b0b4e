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


# Qwen3: ChatML; the assistant turns after the last user message carry their reasoning in a <think> block
# (an empty one on the last turn when there is none, as the model card's template does); earlier turns drop
# it. enable_thinking=false (apply_chat_template's switch) opens the answer with an empty block.
_QWEN3 = (
    "{%- set ns = namespace(last_query=-1) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_query = loop.index0 -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{%- set reasoning = m['reasoning_content'] if m['reasoning_content'] is defined and m['reasoning_content']"
    " else '' -%}"
    "{%- if loop.index0 > ns.last_query and (loop.last or reasoning) -%}"
    "{{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n'"
    " + m['content'].lstrip('\n') + '<|im_end|>\n' -}}"
    "{%- else -%}{{- '<|im_start|>assistant\n' + m['content'] + '<|im_end|>\n' -}}{%- endif -%}"
    "{%- elif m['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\n<tool_response>\n' + m['content'] + '\n</tool_response><|im_end|>\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\n\n</think>\n\n' -}}"
    "{%- endif -%}{%- endif -%}"
)

# Mistral instruct (v0.1-v0.3, SentencePiece tokenizers): [INST] ... [/INST] around user turns, answers end
# with eos. The system prompt opens the first user turn (v0.3's card puts it before the last one, which
# would re-render the history at every turn).
_MISTRAL = (
    "{{- bos_token -}}"
    "{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{%- if m['role'] == 'assistant' -%}{{- ' ' + m['content'] + eos_token -}}"
    "{%- else -%}"
    "{{- '[INST] ' + (system + '\n\n' if system and loop.first else '') + m['content'] + '[/INST]' -}}"
    "{%- endif -%}{%- endfor -%}"
)

# Gemma 2 and 3 instruction-tuned: <start_of_turn>user / model, contents trimmed; the system prompt
# opens the first user turn (Gemma has no system role).
_GEMMA = (
    "{{- bos_token -}}"
    "{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}"
    "{{- '<start_of_turn>' + role + '\n' + (system + '\n\n' if system and loop.first else '')"
    " + (m['content'] | trim) + '<end_of_turn>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)

# Phi-3 / Phi-3.5: <|system|>, <|user|>, <|assistant|>, each turn closed by <|end|>; eos after the last.
_PHI3 = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and m['content'] -%}{{- '<|system|>\n' + m['content'] + '<|end|>\n' -}}"
    "{%- elif m['role'] == 'assistant' -%}{{- '<|assistant|>\n' + m['content'] + '<|end|>\n' -}}"
    "{%- elif m['role'] != 'system' -%}{{- '<|user|>\n' + m['content'] + '<|end|>\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- else -%}{{- eos_token -}}{%- endif -%}"
)

# GLM-4: [gMASK]<sop>, then <|system|> / <|user|> / <|assistant|> each followed by a newline and the text;
# a turn has no closing token, the model stops by writing the next <|user|>. So the <|user|> after an
# answer is written (and trained) as the answer's end; the user turn that follows starts after it.
_GLM4 = (
    "{{- '[gMASK]<sop>' -}}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}{{- '<|assistant|>\n' + m['content'] + '<|user|>' -}}"
    "{%- elif m['role'] == 'system' -%}{{- '<|system|>\n' + m['content'] -}}"
    "{%- else -%}"
    "{%- set after_answer = not loop.first and loop.previtem['role'] == 'assistant' -%}"
    "{{- ('' if after_answer else ('<|observation|>' if m['role'] == 'tool' else '<|user|>')) + '\n'"
    " + m['content'] -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
)

# DeepSeek-V3 / R1: bos, the system prompt untagged, <｜User｜> and <｜Assistant｜>, answers closed by
# <｜end▁of▁sentence｜> (reasoning, when present, is the <think> block in front of the answer).
_DEEPSEEK3 = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}{{- messages[0]['content'] -}}{%- endif -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{%- if m['role'] == 'assistant' -%}{{- '<｜Assistant｜>' + m['content'] + '<｜end▁of▁sentence｜>' -}}"
    "{%- else -%}{{- '<｜User｜>' + m['content'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜Assistant｜>' -}}{%- endif -%}"
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
TEMPLATES.register("qwen3", BuiltinTemplate(_QWEN3, "Qwen3: ChatML with <think> reasoning on the latest turns "
                                            "(enable_thinking=false: an empty block)", "<|im_end|>",
                                            ("<|im_start|>", "<|im_end|>")))
TEMPLATES.register("mistral", BuiltinTemplate(_MISTRAL, "Mistral instruct: [INST] ... [/INST], answers end with eos",
                                              None, ("[INST]", "[/INST]")))
TEMPLATES.register("gemma", BuiltinTemplate(_GEMMA, "Gemma 2/3: <start_of_turn>user / model ... <end_of_turn>",
                                            "<end_of_turn>", ("<start_of_turn>", "<end_of_turn>")))
TEMPLATES.register("phi3", BuiltinTemplate(_PHI3, "Phi-3/3.5: <|user|> / <|assistant|> ... <|end|>", "<|end|>",
                                           ("<|user|>", "<|assistant|>", "<|end|>")))
TEMPLATES.register("glm4", BuiltinTemplate(_GLM4, "GLM-4: [gMASK]<sop><|user|>\\n ... <|assistant|>\\n ...; an answer "
                                           "ends with the next <|user|>", "<|user|>",
                                           ("[gMASK]", "<sop>", "<|user|>", "<|assistant|>")))
TEMPLATES.register("deepseek3", BuiltinTemplate(_DEEPSEEK3, "DeepSeek-V3/R1: <｜User｜> / <｜Assistant｜> ... "
                                                "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                                ("<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>")))
TEMPLATES.register("default", BuiltinTemplate(_DEFAULT, "Plain 'Human: ... / Assistant: ...' for base models"))
TEMPLATES.register("alpaca", BuiltinTemplate(_ALPACA, "Alpaca: ### Instruction / ### Input / ### Response"))
TEMPLATES.register("alpaca_zh", BuiltinTemplate(_ALPACA_ZH, "The Chinese instruction layout: ### 指令 / ### 输入 / ### 输出"))
