"""Every input format of docs/data.md parses into the canonical example, and detection picks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_json, write_jsonl
from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.formats import detect_format
from tuneforge.data.loader import LoadedData, load_data

TOOLS = json.dumps([{"name": "get_time", "description": "Current time", "parameters": {"type": "object"}}])

CASES: dict[str, dict[str, Any]] = {
    "alpaca": {"instruction": "Translate", "input": "cat", "output": "猫", "system": "Be brief.",
               "history": [["hi", "hello"]]},
    "sharegpt": {"conversations": [{"from": "human", "value": "time?"},
                                   {"from": "function_call", "value": '{"name": "get_time", "arguments": {}}'},
                                   {"from": "observation", "value": "12:00"},
                                   {"from": "gpt", "value": "It is noon."}],
                 "system": "You tell time.", "tools": TOOLS},
    "messages": {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello!"}]},
    "code": {"problem": "Reverse a string in Python", "solution": "s[::-1]"},
    "qa": {"question": "2+2?", "answer": "4"},
    "text": {"text": "Plain document text."},
    "preference_qa": {"question": "Best fruit?", "positive_answer": "Apples are tasty.",
                      "negative_answer": "Fruit is bad."},
}


def _load(path: Path, fmt: str = "auto") -> LoadedData:
    return load_data(DataConfig(datasets=[DatasetSpec(path=str(path), format=fmt)]))


def _roles(data: LoadedData, i: int = 0) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in data.examples[i].messages]


@pytest.mark.parametrize("name", sorted(CASES))
def test_detection_picks_the_format(name: str) -> None:
    spec = detect_format([CASES[name]])
    assert spec is not None and spec.name == name


def test_alpaca_with_system_and_history(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "a.json", [CASES["alpaca"]]))
    assert not data.errors
    ex = data.examples[0]
    assert ex.kind == "sft" and ex.system == "Be brief."
    assert _roles(data) == [("user", "hi"), ("assistant", "hello"), ("user", "Translate\ncat"), ("assistant", "猫")]
    assert ex.messages[-2].parts == {"instruction": "Translate", "input": "cat"}


def test_sharegpt_with_tool_calls_system_and_tools(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "s.json", [CASES["sharegpt"]]))
    assert not data.errors
    ex = data.examples[0]
    assert ex.system == "You tell time." and "get_time" in ex.tools
    assert [m.role for m in ex.messages] == ["user", "tool_call", "tool", "assistant"]


def test_openai_messages_with_tool_calls(tmp_path: Path) -> None:
    record = {"messages": [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "content": "12:00"},
        {"role": "assistant", "content": "Noon."}]}
    data = _load(write_jsonl(tmp_path / "m.jsonl", [CASES["messages"], record]))
    assert not data.errors
    assert data.examples[0].system == "Be kind."
    assert _roles(data, 0) == [("user", "Hi"), ("assistant", "Hello!")]
    roles = [m.role for m in data.examples[1].messages]
    assert roles == ["user", "tool_call", "tool", "assistant"]
    assert json.loads(data.examples[1].messages[1].content)["name"] == "get_time"


def test_dialogue_needs_the_explicit_name(tmp_path: Path) -> None:
    record = {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]}
    data = _load(write_json(tmp_path / "d.json", [record]), fmt="dialogue")
    assert not data.errors and _roles(data) == [("user", "你好"), ("assistant", "你好！")]


def test_code_and_qa(tmp_path: Path) -> None:
    data = _load(write_jsonl(tmp_path / "c.jsonl", [CASES["code"]]))
    assert _roles(data) == [("user", "Reverse a string in Python"), ("assistant", "s[::-1]")]
    data = _load(write_jsonl(tmp_path / "q.jsonl", [CASES["qa"]]))
    assert _roles(data) == [("user", "2+2?"), ("assistant", "4")]


def test_text_records_are_pretraining(tmp_path: Path) -> None:
    data = _load(write_jsonl(tmp_path / "t.jsonl", [CASES["text"]]))
    assert data.examples[0].kind == "pt" and data.examples[0].text == "Plain document text."


def test_seed_preference_style(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "p.json", [CASES["preference_qa"]]))
    ex = data.examples[0]
    assert ex.kind == "pairwise"
    assert ex.chosen is not None and ex.chosen.content == "Apples are tasty."
    assert ex.rejected is not None and ex.rejected.content == "Fruit is bad."
    assert _roles(data) == [("user", "Best fruit?")]


def test_alpaca_preference_pairs(tmp_path: Path) -> None:
    record = {"instruction": "Greet", "input": "", "chosen": "Hello!", "rejected": "Go away."}
    data = _load(write_json(tmp_path / "p.json", [record]))
    ex = data.examples[0]
    assert not data.errors and ex.kind == "pairwise" and ex.chosen.content == "Hello!"


def test_sharegpt_preference_pairs(tmp_path: Path) -> None:
    record = {"conversations": [{"from": "human", "value": "Hi"}],
              "chosen": {"from": "gpt", "value": "Hello!"}, "rejected": {"from": "gpt", "value": "No."}}
    data = _load(write_json(tmp_path / "p.json", [record]), fmt="sharegpt")
    ex = data.examples[0]
    assert not data.errors and ex.kind == "pairwise" and ex.rejected.content == "No."


@pytest.mark.parametrize("tag,expected", [(True, True), (False, False), ("true", True), ("false", False)])
def test_kto_tags(tmp_path: Path, tag: object, expected: bool) -> None:
    record = {"instruction": "Greet", "input": "", "output": "Hello!", "kto_tag": tag}
    data = _load(write_json(tmp_path / "k.json", [record]))
    ex = data.examples[0]
    assert not data.errors and ex.kind == "unpaired" and ex.label is expected
    assert ex.completion is not None and ex.completion.content == "Hello!"


def test_kto_label_column_of_messages(tmp_path: Path) -> None:
    record = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "label": False}
    data = _load(write_jsonl(tmp_path / "k.jsonl", [record]))
    assert not data.errors and data.examples[0].kind == "unpaired" and data.examples[0].label is False


def test_format_override_beats_detection(tmp_path: Path) -> None:
    # question/answer would be detected as qa; forcing "text" must then complain about the missing field
    data = _load(write_json(tmp_path / "q.json", [CASES["qa"]]), fmt="text")
    assert data.errors and data.errors[0].field == "text"


def test_undetectable_format_names_the_keys_and_the_fix(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "x.json", [{"foo": 1, "bar": 2}]))
    assert data.errors
    msg = data.errors[0].render()
    assert "foo" in msg and "format" in msg.lower()


def test_mixing_with_ratio_and_max_samples(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "output": "x"} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": f"b{i}", "output": "y"} for i in range(10)])
    cfg = DataConfig(datasets=[DatasetSpec(path=str(a), ratio=0.5), DatasetSpec(path=str(b), ratio=2.0),
                               DatasetSpec(path=str(a), max_samples=3)])
    data = load_data(cfg)
    assert [r.used for r in data.reports] == [5, 20, 3]
    firsts = [ex.messages[0].content for ex in data.examples[-3:]]
    assert firsts == ["a0", "a1", "a2"]  # max_samples takes the first N, in file order
    again = load_data(cfg)
    assert [ex.messages[0].content for ex in again.examples] == [ex.messages[0].content for ex in data.examples]


def test_placeholders_are_filled_and_unfilled_ones_reported(tmp_path: Path) -> None:
    path = write_json(tmp_path / "id.json", [{"instruction": "who?", "output": "I am {{name}} by {{author}}."}])
    filled = load_data(DataConfig(datasets=[str(path)], placeholders={"name": "Forge", "author": "Acme"}))
    assert filled.examples[0].messages[-1].content == "I am Forge by Acme."
    assert not filled.unfilled
    partial = load_data(DataConfig(datasets=[str(path)], placeholders={"name": "Forge"}))
    assert partial.unfilled == {"author": 1}
    assert any("{{author}}" in w.message for w in partial.warnings)
