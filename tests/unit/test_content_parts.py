"""Message content given as parts (OpenAI) and LLaMA-Factory v1 files: loss weights, reasoning, tool calls, pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.conftest import write_jsonl
from tuneforge.cli.main import app
from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.formats import detect_format
from tuneforge.data.loader import LoadedData, load_data, stage_problems
from tuneforge.data.processors.base import ProcessOptions, process_examples
from tuneforge.data.processors.sft import IGNORE
from tuneforge.data.quality import serialised_json_warnings
from tuneforge.data.records import Example, Message, Origin
from tuneforge.data.templates.base import ChatTemplate

runner = CliRunner()


def _v1(role: str, *parts: tuple[str, str], weight: float | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": role, "content": [{"type": t, "value": v} for t, v in parts]}
    if weight is not None:
        msg["loss_weight"] = weight
    return msg


def _openai_parts(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": question}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def _load(path: Path) -> LoadedData:
    return load_data(DataConfig(datasets=[DatasetSpec(path=str(path))]))


def _labels(tokenizer: Any, template: ChatTemplate, ex: Example) -> tuple[list[int], list[int]]:
    processed = process_examples([ex], ProcessOptions(tokenizer, template, 4096))
    return processed.columns["input_ids"][0], processed.columns["labels"][0]


def _trained_text(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])


# --- 1. content parts -------------------------------------------------------------------------------------

def test_openai_text_parts_are_joined_into_the_message_text(tmp_path: Path) -> None:
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is"},
                                                         {"type": "text", "text": "2+2?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "4"}]}]}
    data = _load(write_jsonl(tmp_path / "p.jsonl", [record]))
    assert not data.errors
    assert [(m.role, m.content) for m in data.examples[0].messages] == [("user", "What is\n2+2?"), ("assistant", "4")]


def test_inspect_shows_the_text_of_parts_not_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [_openai_parts("What is 2+2?", "Four.")])
    result = runner.invoke(app, ["data", "inspect", str(path), "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "What is 2+2?" in result.output and '"type"' not in result.output


def test_non_text_parts_are_refused_naming_file_record_message_and_type(tmp_path: Path) -> None:
    image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                                        {"type": "image_url", "image_url": {"url": "x.png"}}]},
                          {"role": "assistant", "content": "A cat."}]}
    audio = {"messages": [_v1("user", ("audio_url", "a.wav")), _v1("assistant", ("text", "Hi"))]}
    path = write_jsonl(tmp_path / "mm.jsonl", [_openai_parts("ok?", "ok"), image, audio])
    data = _load(path)
    found = [(p.file, p.index, p.field) for p in data.errors]
    assert found == [(str(path), 1, "messages[0].content[1].type"), (str(path), 2, "messages[0].content[0].type")]
    assert "'image_url'" in data.errors[0].message and "'audio_url'" in data.errors[1].message
    assert len(data.examples) == 1


def test_data_check_reads_parts_and_flags_serialised_json(tmp_path: Path) -> None:
    records = [_openai_parts(f"Question {i} about topic {i % 7}?", f"Answer {i}.") for i in range(12)]
    records.append({"messages": [{"role": "user", "content": '{"question": "dumped", "lang": "en"}'},
                                 {"role": "assistant", "content": "ok"}]})
    result = runner.invoke(app, ["data", "check", str(write_jsonl(tmp_path / "p.jsonl", records)), "--json"])
    report = json.loads(result.output)
    phrases = [p["phrase"] for p in report["leading_phrases"]]
    assert not any("type" in p for p in phrases), phrases
    flagged = [w for w in report["warnings"] if "serialised JSON" in w["message"]]
    assert [w["index"] for w in flagged] == [12]


def test_serialised_json_check_ignores_tool_turns_and_plain_text() -> None:
    origin = Origin("d", "d.json", 0)
    ex = Example("sft", origin, [Message("user", "{not json"), Message("tool_call", '{"name": "f", "arguments": {}}'),
                                 Message("tool", '{"t": 1}'), Message("assistant", "[1, 2] is a list")])
    assert serialised_json_warnings([ex]) == []
    ex.messages[0] = Message("user", '{"question": "x"}')
    assert len(serialised_json_warnings([ex])) == 1


# --- 2. LLaMA-Factory v1 files ----------------------------------------------------------------------------

def test_v1_sft_is_detected_and_loss_weight_zero_masks_the_turn(tmp_path: Path, tokenizer: Any,
                                                                chat_template: ChatTemplate) -> None:
    record = {"messages": [_v1("user", ("text", "First?"), weight=0.0),
                           _v1("assistant", ("text", "Masked answer."), weight=0.0),
                           _v1("user", ("text", "Second?"), weight=0.0),
                           _v1("assistant", ("text", "Trained answer."), weight=1.0)]}
    path = write_jsonl(tmp_path / "v1_sft.jsonl", [record])
    assert detect_format([record]).name == "messages"
    data = _load(path)
    assert not data.errors
    ex = data.examples[0]
    assert [m.train for m in ex.messages] == [False, False, False, True]
    ids, labels = _labels(tokenizer, chat_template, ex)
    trained = _trained_text(tokenizer, ids, labels)
    assert "Trained answer." in trained and "Masked answer." not in trained
    assert "Masked answer." in tokenizer.decode(ids)  # still in the context
    out = runner.invoke(app, ["data", "inspect", str(path), "-n", "1"]).output
    assert "Trained answer." in out and "Masked answer." in out


def test_v1_loss_weights_other_than_0_and_1_are_refused(tmp_path: Path) -> None:
    half = {"messages": [_v1("user", ("text", "q"), weight=0.0), _v1("assistant", ("text", "a"), weight=0.5)]}
    user_trained = {"messages": [_v1("user", ("text", "q"), weight=1.0), _v1("assistant", ("text", "a"), weight=1.0)]}
    data = _load(write_jsonl(tmp_path / "w.jsonl", [half, user_trained]))
    assert [(p.index, p.field) for p in data.errors] == [(0, "messages[1].loss_weight"), (1, "messages[0].loss_weight")]
    assert "0.5" in data.errors[0].message and "train_on_prompt" in data.errors[1].fix


def test_all_answers_masked_is_dropped_with_a_reason(tokenizer: Any, chat_template: ChatTemplate) -> None:
    ex = Example("sft", Origin("d", "d.json", 0), [Message("user", "q"), Message("assistant", "a", train=False)])
    processed = process_examples([ex], ProcessOptions(tokenizer, chat_template, 4096))
    assert len(processed) == 0
    assert "loss_weight 0" in next(iter(processed.stats.dropped))


def test_v1_reasoning_is_trained_inside_think_for_chatml(tmp_path: Path, tokenizer: Any,
                                                         chat_template: ChatTemplate) -> None:
    record = {"messages": [_v1("user", ("text", "2+3?"), weight=0.0),
                           _v1("assistant", ("reasoning", "Add two and three."), ("text", "5"), weight=1.0)]}
    data = _load(write_jsonl(tmp_path / "r.jsonl", [record]))
    ex = data.examples[0]
    assert (ex.messages[1].content, ex.messages[1].reasoning) == ("5", "Add two and three.")
    ids, labels = _labels(tokenizer, chat_template, ex)
    assert _trained_text(tokenizer, ids, labels) == "<think>\nAdd two and three.\n</think>\n\n5<|im_end|>"


def test_placeholders_are_filled_in_reasoning_too() -> None:
    from tuneforge.data.placeholders import fill_example

    ex = Example("sft", Origin("d", "d.json", 0), [Message("user", "Who?"),
                                                   Message("assistant", "{{name}}.", reasoning="I am {{name}}")])
    assert fill_example(ex, {"name": "Forge"}) == set()
    assert (ex.messages[1].content, ex.messages[1].reasoning) == ("Forge.", "I am Forge")


def test_reasoning_goes_to_reasoning_content_when_the_template_reads_it(tokenizer: Any) -> None:
    source = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.reasoning_content %}<think>"
              "{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    from tuneforge.data.templates.resolve import _build

    tpl = _build("think", source, {}, "<|im_end|>", (), None, tokenizer)
    assert tpl.supports_reasoning
    turns, _ = tpl.turns([Message("user", "q"), Message("assistant", "5", reasoning="r")])
    assert turns[0].answer == "<think>r</think>5<|im_end|>"


def test_v1_tool_call_parts_match_the_openai_tool_calls_path(tmp_path: Path) -> None:
    call = {"name": "get_time", "arguments": {"tz": "UTC"}}
    tools = [{"name": "get_time", "description": "time", "parameters": {"type": "object"}}]
    v1 = {"messages": [_v1("system", ("tools", json.dumps(tools)), weight=0.0),
                       _v1("user", ("text", "time?"), weight=0.0),
                       _v1("assistant", ("tool_call", json.dumps(call)), weight=1.0),
                       _v1("tool", ("text", "12:00"), weight=0.0),
                       _v1("assistant", ("text", "Noon."), weight=1.0)]}
    openai = {"tools": tools, "messages": [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_time", "arguments": json.dumps(call["arguments"])}}]},
        {"role": "tool", "content": "12:00"}, {"role": "assistant", "content": "Noon."}]}
    a, b = _load(write_jsonl(tmp_path / "v1.jsonl", [v1])), _load(write_jsonl(tmp_path / "oa.jsonl", [openai]))
    assert not a.errors and not b.errors
    ea, eb = a.examples[0], b.examples[0]
    assert [(m.role, m.content) for m in ea.messages] == [(m.role, m.content) for m in eb.messages]
    assert ea.messages[1].role == "tool_call" and json.loads(ea.messages[1].content) == call
    assert json.loads(ea.tools) == json.loads(eb.tools) == tools


def test_text_beside_a_tool_call_is_refused_not_dropped(tmp_path: Path) -> None:
    record = {"messages": [{"role": "user", "content": "time?"},
                           {"role": "assistant", "content": "Let me check.", "tool_calls": [
                               {"type": "function", "function": {"name": "t", "arguments": "{}"}}]}]}
    data = _load(write_jsonl(tmp_path / "t.jsonl", [record]))
    assert [p.field for p in data.errors] == ["messages[1].content"]


def _pair(answer_good: str, answer_bad: str, question: str = "Capital of France?") -> dict[str, Any]:
    prompt = [_v1("system", ("text", "Be brief."), weight=0.0), _v1("user", ("text", question), weight=0.0)]
    return {"chosen_messages": [*prompt, _v1("assistant", ("text", answer_good), weight=1.0)],
            "rejected_messages": [*prompt, _v1("assistant", ("text", answer_bad), weight=1.0)]}


def test_v1_preference_pairs_become_pairwise_examples(tmp_path: Path) -> None:
    record = _pair("Paris.", "Lyon.")
    assert detect_format([record]).name == "message_pairs"
    data = _load(write_jsonl(tmp_path / "v1_dpo.jsonl", [record]))
    assert not data.errors
    ex = data.examples[0]
    assert ex.kind == "pairwise" and ex.system == "Be brief."
    assert [(m.role, m.content) for m in ex.messages] == [("user", "Capital of France?")]
    assert (ex.chosen.content, ex.rejected.content) == ("Paris.", "Lyon.")
    for stage in ("rm", "dpo", "simpo", "orpo", "kto"):
        assert stage_problems(data.examples, stage) == [], stage


def test_v1_pairs_with_different_prompts_are_refused(tmp_path: Path) -> None:
    record = _pair("Paris.", "Lyon.")
    record["rejected_messages"][1] = _v1("user", ("text", "Capital of Italy?"), weight=0.0)
    data = _load(write_jsonl(tmp_path / "bad.jsonl", [record]))
    assert [p.field for p in data.errors] == ["rejected_messages"]
    assert not data.examples


def test_convert_refuses_what_would_be_lost() -> None:
    from tuneforge.data.convert import convert_examples

    origin = Origin("d", "d.json", 0)
    thinking = Example("sft", origin, [Message("user", "q"), Message("assistant", "a", reasoning="r")])
    masked = Example("sft", origin, [Message("user", "q"), Message("assistant", "a", train=False),
                                     Message("user", "q2"), Message("assistant", "b")])
    out, problems = convert_examples([thinking, masked], "messages")
    assert out == [] and ["reasoning" in problems[0].message, "loss_weight" in problems[1].message] == [True, True]
