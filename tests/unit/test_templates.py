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
    assert len(turns) == 2
    assert turns[0].answer.startswith("Hello!") and turns[1].answer.startswith("4")


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
