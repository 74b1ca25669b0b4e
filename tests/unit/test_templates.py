"""Templates: the tokenizer's own first, a registry for the rest, and a pre-flight check against mismatch."""

from __future__ import annotations

from typing import Any

import pytest

from tuneforge.data.records import Message
from tuneforge.data.templates import resolve_template
from tuneforge.data.templates.builtin import TEMPLATES
from tuneforge.data.templates.check import template_warnings
from tuneforge.utils.errors import ConfigError

CONVERSATION = [Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "2+2?"),
                Message("assistant", "4")]


def test_auto_uses_the_tokenizers_own_template(tokenizer: Any, chat_template: Any) -> None:
    dicts = [{"role": m.role, "content": m.content} for m in CONVERSATION]
    theirs = tokenizer.apply_chat_template(dicts, tokenize=False)
    turns, tail = chat_template.turns(CONVERSATION)
    assert "".join(t.prompt + t.answer for t in turns) + tail == theirs
    assert chat_template.eot == "<|im_end|>"


def test_every_answer_ends_with_the_end_of_turn_token(chat_template: Any) -> None:
    turns, _ = chat_template.turns(CONVERSATION)
    assert [t.answer for t in turns] == ["Hello!<|im_end|>", "4<|im_end|>"]
    assert turns[1].prompt.endswith("<|im_start|>assistant\n")


def test_prompt_equals_generation_prompt(tokenizer: Any, chat_template: Any) -> None:
    dicts = [{"role": m.role, "content": m.content} for m in CONVERSATION[:3]]
    assert chat_template.prompt(CONVERSATION[:3]) == tokenizer.apply_chat_template(
        dicts, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("name", sorted(TEMPLATES.names()))
def test_fast_split_equals_prefix_split(tokenizer: Any, name: str) -> None:
    fast = resolve_template(name, tokenizer)
    slow = resolve_template(name, tokenizer)
    slow.fast = False
    for conv in (CONVERSATION, CONVERSATION[:2]):
        assert fast.turns(conv, system="Be brief.") == slow.turns(conv, system="Be brief.")


@pytest.mark.parametrize("name", sorted(TEMPLATES.names()))
def test_builtin_answers_are_suffix_of_their_turn(tokenizer: Any, name: str) -> None:
    tpl = resolve_template(name, tokenizer)
    turns, _ = tpl.turns(CONVERSATION)
    answers = [t.answer.lstrip(" ") for t in turns]  # mistral's answers start with the space after [/INST]
    if name == "qwen3":  # its history drops the think block: only the last answer is a suffix (trained)
        assert len(turns) == 1 and answers[0].startswith("<think>\n\n</think>\n\n4")
    else:
        assert len(turns) == 2 and answers[0].startswith("Hello!") and answers[1].startswith("4")


def test_alpaca_zh_lays_out_instruction_input_output(tokenizer: Any) -> None:
    tpl = resolve_template("alpaca_zh", tokenizer)
    msgs = [Message("user", "翻译\ncat", parts={"instruction": "翻译", "input": "cat"}), Message("assistant", "猫")]
    turns, _ = tpl.turns(msgs)
    assert "### 指令" in turns[0].prompt and "### 输入" in turns[0].prompt and "### 输出" in turns[0].prompt
    assert "翻译" in turns[0].prompt and turns[0].answer.startswith("猫")


def test_default_template_is_plain_human_assistant(tokenizer: Any) -> None:
    turns, _ = resolve_template("default", tokenizer).turns(CONVERSATION[:2])
    assert "Human: Hi" in turns[0].prompt and "Assistant:" in turns[0].prompt


def test_llama3_on_a_chatml_tokenizer_warns(tokenizer: Any) -> None:
    warnings = template_warnings(resolve_template("llama3", tokenizer), tokenizer)
    text = " ".join(w.message for w in warnings)
    assert "<|eot_id|>" in text or "<|start_header_id|>" in text
    assert "differs from the tokenizer's own chat template" in text


def test_matching_template_has_no_warnings(tokenizer: Any, chat_template: Any) -> None:
    assert template_warnings(chat_template, tokenizer) == []


def test_plain_template_warns_that_it_has_no_stop_token(tokenizer: Any) -> None:
    messages = " ".join(w.message for w in template_warnings(resolve_template("default", tokenizer), tokenizer))
    assert "end-of-turn" in messages or "differs" in messages


def test_unknown_template_suggests(tokenizer: Any) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_template("chatlm", tokenizer)
    assert "Did you mean 'chatml'" in err.value.problems[0].render()


def test_tools_are_folded_into_system_when_the_template_has_no_tools(chat_template: Any) -> None:
    tools = '[{"name": "get_time", "description": "now", "parameters": {}}]'
    text = chat_template.prompt([Message("user", "time?")], tools=tools)
    assert "get_time" in text


#: The model cards' renderings of one conversation (system "Be brief.", two turns, reasoning on the second),
#: with each family's own bos/eos, and the answers training learns.
FAMILY_TOKENS = {"mistral": {"bos_token": "<s>", "eos_token": "</s>"}, "gemma": {"bos_token": "<bos>", "eos_token": "<eos>"},
                 "phi3": {"bos_token": "<s>", "eos_token": "<|endoftext|>"}, "qwen3": {"eos_token": "<|im_end|>"},
                 "glm4": {"eos_token": "<|endoftext|>"},
                 "deepseek3": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}}
REFERENCE = {
    "qwen3": ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
              "<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n2 plus 2 is 4.\n</think>"
              "\n\n4<|im_end|>\n",
              # history turns drop their reasoning, so only the last answer is a suffix: it alone is trained
              ["<think>\n2 plus 2 is 4.\n</think>\n\n4<|im_end|>"]),
    "mistral": ("<s>[INST] Be brief.\n\nHi[/INST] Hello!</s>[INST] 2+2?[/INST] <think>\n2 plus 2 is 4.\n</think>\n\n4</s>",
                [" Hello!</s>", " <think>\n2 plus 2 is 4.\n</think>\n\n4</s>"]),
    "gemma": ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
              "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n<think>\n2 plus 2 is 4.\n</think>\n\n4"
              "<end_of_turn>\n", ["Hello!<end_of_turn>", "<think>\n2 plus 2 is 4.\n</think>\n\n4<end_of_turn>"]),
    "phi3": ("<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n2+2?<|end|>\n"
             "<|assistant|>\n<think>\n2 plus 2 is 4.\n</think>\n\n4<|end|>\n<|endoftext|>",
             ["Hello!<|end|>", "<think>\n2 plus 2 is 4.\n</think>\n\n4<|end|>"]),
    "glm4": ("[gMASK]<sop><|system|>\nBe brief.<|user|>\nHi<|assistant|>\nHello!<|user|>\n2+2?<|assistant|>\n<think>\n"
             "2 plus 2 is 4.\n</think>\n\n4<|user|>", ["Hello!<|user|>", "<think>\n2 plus 2 is 4.\n</think>\n\n4<|user|>"]),
    "deepseek3": ("<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?"
                  "<｜Assistant｜><think>\n2 plus 2 is 4.\n</think>\n\n4<｜end▁of▁sentence｜>",
                  ["Hello!<｜end▁of▁sentence｜>", "<think>\n2 plus 2 is 4.\n</think>\n\n4<｜end▁of▁sentence｜>"]),
}
GENERATION_PROMPT = {"qwen3": "<|im_start|>assistant\n", "mistral": "[INST] Hi[/INST]", "gemma": "<start_of_turn>model\n",
                     "phi3": "<|assistant|>\n", "glm4": "<|assistant|>\n", "deepseek3": "<｜Assistant｜>"}


def _family_template(name: str) -> Any:
    from tuneforge.data.templates.base import ChatTemplate

    spec, special = TEMPLATES.get(name), FAMILY_TOKENS[name]
    return ChatTemplate(name, spec.source, special, spec.eot or special["eos_token"], spec.markers,
                        supports_reasoning="reasoning_content" in spec.source)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_family_templates_render_as_their_model_cards(name: str) -> None:
    conv = [Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "2+2?"),
            Message("assistant", "4", reasoning="2 plus 2 is 4.")]
    tpl = _family_template(name)
    expected, answers = REFERENCE[name]
    dicts, _ = tpl.to_dicts(conv, system="Be brief.")
    assert tpl.render(dicts) == expected
    turns, tail = tpl.turns(conv, system="Be brief.")
    assert [t.answer for t in turns if t.trained] == answers
    assert tpl.prompt(conv[:1]).endswith(GENERATION_PROMPT[name])


def test_qwen3_trains_an_empty_think_block_and_switches_thinking_off() -> None:
    tpl = _family_template("qwen3")
    turns, _ = tpl.turns([Message("user", "Hi"), Message("assistant", "Hello!")])
    assert [t.answer for t in turns] == ["<think>\n\n</think>\n\nHello!<|im_end|>"]  # the card's no-reasoning layout
    dicts, _ = tpl.to_dicts([Message("user", "Hi")])
    off = tpl._compiled.render(messages=dicts, add_generation_prompt=True, enable_thinking=False, **tpl.special)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
