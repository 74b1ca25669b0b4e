"""Reading files: every supported type, and every bad input located by file, record, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_json, write_jsonl
from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.loader import load_data, require_usable
from tuneforge.data.readers import read_file
from tuneforge.utils.errors import DataError, Problem, render_problems

ALPACA = [{"instruction": "Say hi", "input": "", "output": "Hi!"},
          {"instruction": "Add", "input": "1+1", "output": "2"}]


def _load(path: Path, fmt: str = "auto", **data: object) -> object:
    return load_data(DataConfig(datasets=[DatasetSpec(path=str(path), format=fmt)], **data))


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_every_file_type_reads_the_same_records(tmp_path: Path, suffix: str) -> None:
    from tuneforge.data.writers import write_records

    path = write_records(tmp_path / f"d{suffix}", ALPACA)
    data = _load(path)
    assert not data.errors
    assert [(m.role, m.content) for m in data.examples[1].messages] == [("user", "Add\n1+1"), ("assistant", "2")]


def test_txt_lines_are_documents(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("first doc\n\nsecond doc\n", encoding="utf-8")
    data = _load(path)
    assert [ex.text for ex in data.examples] == ["first doc", "second doc"]
    assert [ex.origin.line for ex in data.examples] == [1, 3]


def test_json_records_know_their_lines(tmp_path: Path) -> None:
    path = write_json(tmp_path / "d.json", ALPACA)
    result = read_file(path)
    text = path.read_text().splitlines()
    assert [r.line for r in result.records] == [2, 7]
    assert text[6].strip() == "{"


def test_jsonl_under_a_json_name_is_accepted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.json", ALPACA)
    assert len(read_file(path).records) == 2


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    problems = read_file(path).problems
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.index, p.line) == (str(path), 1, 3)
    assert "column 23" in p.message and "delimiter" in p.message
    assert p.fix


def test_jsonl_reports_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n[1, 2]\n{"instruction": \n\n"just a string"\n')
    result = read_file(path)
    assert len(result.records) == 1
    got = [(p.index, p.line, p.message.split(":")[0]) for p in result.problems]
    assert got == [(1, 2, "record is a list, not an object"), (2, 3, "malformed JSON"),
                   (3, 5, "record is a str, not an object")]


def test_non_utf8_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "gbk.json"
    path.write_bytes('[\n{"instruction": "你好", "output": "好"}\n]'.encode("gbk"))
    [p] = read_file(path).problems
    assert p.line == 2 and "UTF-8" in p.message and "iconv" in (p.fix or "")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ALPACA).encode())
    assert len(read_file(path).records) == 2


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    [p] = read_file(path).problems
    assert p.message == "file is empty" and p.file == str(path)


def test_missing_file_and_unsupported_type(tmp_path: Path) -> None:
    assert read_file(tmp_path / "nope.json").problems[0].message == "file not found"
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    assert "unsupported file type" in read_file(odd).problems[0].message


def test_top_level_object_is_explained(tmp_path: Path) -> None:
    path = write_json(tmp_path / "obj.json", {"data": ALPACA})
    [p] = read_file(path).problems
    assert "not a list of records" in p.message


def test_missing_and_empty_fields_are_all_reported(tmp_path: Path) -> None:
    records = [{"instruction": "ok", "output": "fine"}, {"instruction": "no answer"},
               {"instruction": "", "input": "", "output": "x"}, {"instruction": "q", "output": "   "}]
    data = _load(write_json(tmp_path / "d.json", records))
    got = [(p.index, p.field, p.message) for p in data.errors]
    assert got == [(1, "output", "missing field 'output'"), (2, "instruction", "empty 'instruction'"),
                   (3, "output", "empty answer: an assistant turn must have text")]
    assert all(p.line is not None and p.fix for p in data.errors)
    assert len(data.examples) == 1


def test_wrong_role_order_and_empty_assistant_turn(tmp_path: Path) -> None:
    records = [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                           {"from": "gpt", "value": "c"}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": ""}]},
        {"conversations": [{"from": "system", "value": "s"}, {"from": "gpt", "value": "a"}]},
        {"conversations": [{"from": "human", "value": "a"}]},
        {"conversations": [{"from": "robot", "value": "a"}]},
    ]
    data = _load(write_json(tmp_path / "d.json", records))
    got = [(p.index, p.field) for p in data.errors]
    assert got == [(0, "conversations[1]"), (1, "conversations[1].value"), (2, "conversations[1]"),
                   (3, "conversations[0]"), (4, "conversations[0].from")]
    msgs = [p.message for p in data.errors]
    assert "wrong role order" in msgs[0] and "empty assistant turn" in msgs[1]
    assert "ends without an assistant answer" in msgs[3] and "unknown role 'robot'" in msgs[4]
    assert "human" in (data.errors[4].fix or "")


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "d.json", [{"foo": 1, "bar": 2}]))
    [p] = data.errors
    assert "unknown data format (fields: bar, foo)" in p.message and p.index == 0
    data = _load(write_json(tmp_path / "e.json", ALPACA), fmt="alpacca")
    assert "Did you mean 'alpaca'?" in data.errors[0].message


def test_problems_are_capped_with_a_count(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}"} for i in range(30)])
    data = _load(path)
    assert len(data.errors) == 30
    text = render_problems(data.errors)
    assert text.count("\n- ") == 19 and text.endswith("and 10 more problem(s) of the same kinds.")


def test_zero_examples_never_train(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "d.json", [{"instruction": "q"}]))
    with pytest.raises(DataError) as info:
        require_usable(data, "sft")
    messages = [p.message for p in info.value.problems]
    assert "missing field 'output'" in messages and any("zero examples" in m for m in messages)


def test_skip_invalid_trains_on_the_rest(tmp_path: Path) -> None:
    data = _load(write_json(tmp_path / "d.json", [{"instruction": "q"}, *ALPACA]))
    require_usable(data, "sft", skip_invalid=True)
    assert len(data.examples) == 2


def test_placeholders_warn_in_check_and_fail_at_training(tmp_path: Path) -> None:
    records = [{"instruction": "Who are you?", "output": "I am {{name}} by {{author}}."}]
    path = write_json(tmp_path / "d.json", records)
    data = _load(path, placeholders={"name": "Forge"})
    assert data.examples[0].messages[-1].content == "I am Forge by {{author}}."
    [w] = data.warnings
    assert w.severity == "warning" and "{{author}} (1 records)" in w.message
    require_usable(data, "sft")  # a warning only ...
    with pytest.raises(DataError, match="cannot be used"):
        require_usable(data, "sft", strict_placeholders=True)  # ... but an error when training


def test_stage_mismatch_is_explained(tmp_path: Path) -> None:
    pairs = [{"instruction": "q", "chosen": "good", "rejected": "bad"}]
    data = _load(write_json(tmp_path / "d.json", pairs))
    with pytest.raises(DataError) as info:
        require_usable(data, "sft")
    [p] = info.value.problems
    assert "pairwise" in p.message and "dpo" in (p.fix or "")


def test_problem_rendering_names_everything() -> None:
    p = Problem("empty answer", file="d.jsonl", index=3, line=4, field="output", fix="write it")
    assert p.render() == "d.jsonl record 3 (line 4) field 'output': empty answer Fix: write it"
