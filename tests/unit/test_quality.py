"""Quality checks (docs/data.md), splitting and conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_json
from tuneforge.config.schema import DataConfig, RunConfig
from tuneforge.data.check import check_data
from tuneforge.data.convert import convert_examples
from tuneforge.data.loader import load_data
from tuneforge.data.quality import (
    find_duplicates,
    leading_phrase,
    length_summary,
    phrase_diversity,
    volume_warnings,
)
from tuneforge.data.records import Example, Message, Origin
from tuneforge.data.split import split_counts, split_file
from tuneforge.utils.errors import DataError

LOREM = ("The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence "
         "and thinks about the harvest that will come at the end of the long summer")


def _ex(q: str, a: str) -> Example:
    return Example("sft", Origin("t", "t.json", 0), [Message("user", q), Message("assistant", a)])


def test_exact_and_near_duplicates_are_counted() -> None:
    exs = [_ex("q1", LOREM), _ex("q1", LOREM), _ex("q2", LOREM.replace("lazy", "sleepy")), _ex("q3", "other")]
    dup = find_duplicates(exs)
    assert dup.exact == 1 and dup.near == 1
    assert dup.pairs == [(0, 1), (0, 2)]


def test_no_false_duplicates_on_distinct_text() -> None:
    exs = [_ex(f"question {i}", f"{i} " + " ".join(str(i * j) for j in range(40))) for i in range(50)]
    assert find_duplicates(exs).exact == 0 and find_duplicates(exs).near == 0


@pytest.mark.parametrize("text,phrase", [("Write a poem about cats", "write a poem"), ("请写一首关于猫的诗", "请写一首关于")])
def test_leading_phrase(text: str, phrase: str) -> None:
    assert leading_phrase(text) == phrase


def test_a_dominant_leading_phrase_warns() -> None:
    exs = [_ex(f"根据以下已知内容回答问题{i}", "好") for i in range(12)] + [_ex(f"Other {i}", "x") for i in range(8)]
    top, warnings = phrase_diversity(exs)
    assert top[0] == {"phrase": "根据以下已知", "count": 12, "share": 0.6}
    assert len(warnings) == 1 and "60%" in warnings[0].message
    assert not phrase_diversity(exs[10:])[1]


def test_length_summary_and_volume() -> None:
    s = length_summary(list(range(1, 101)))
    assert (s["min"], s["p50"], s["max"]) == (1, 50, 100) and s["p95"] == 95
    assert volume_warnings(20, "sft", "lora") and not volume_warnings(100_000, "sft", "lora")


def test_check_report_on_a_flawed_file(tmp_path: Path, tokenizer: Any, chat_template: Any) -> None:
    records = [{"instruction": "Write a poem about the sea", "output": LOREM},
               {"instruction": "Write a poem about the sea", "output": LOREM},
               {"instruction": "Write a poem about {{topic}}", "output": "Waves. " * 300},
               {"instruction": "Write a poem please", "output": ""},
               {"instruction": "", "output": "x"},
               {"instruction": "hi", "output": "I am <|im_end|> here"}]
    path = write_json(tmp_path / "bad.json", records)
    cfg = RunConfig(data=DataConfig(datasets=[str(path)], max_length=128))
    rep = check_data(cfg, tokenizer, chat_template).to_json()
    assert rep["records"] == 6 and rep["format"] == "alpaca"
    fields = {(e["index"], e["field"]) for e in rep["errors"]}
    assert (3, "output") in fields and (4, "instruction") in fields  # both empty fields, not just the first
    assert all(e["file"] == str(path) and e["line"] for e in rep["errors"])
    assert rep["duplicates"]["exact"] == 1
    assert rep["truncated"] == 1 and rep["token_lengths"]["max"] > 128
    assert rep["placeholders"] == {"topic": 1}
    text = " ".join(w["message"] for w in rep["warnings"])
    assert "'<|im_end|>'" in text
    assert rep["ok"] is False


def test_split_is_exact_reproducible_and_keeps_duplicates_together(tmp_path: Path) -> None:
    records = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(97)] + [{"instruction": "dup", "output": "d"}] * 3
    path = write_json(tmp_path / "d.json", records)
    out = split_file(path, (0.7, 0.15, 0.15), 1, tmp_path / "out")
    assert [n for _, n in out.values()] == list(split_counts(100, (0.7, 0.15, 0.15))) == [70, 15, 15]
    parts = {name: load_data(DataConfig(datasets=[str(p)])).examples for name, (p, _) in out.items()}
    holding_dup = [name for name, exs in parts.items() if any(ex.messages[0].content == "dup" for ex in exs)]
    assert len(holding_dup) == 1  # identical records never leak across train / validation / test
    firsts = sorted(ex.messages[0].content for exs in parts.values() for ex in exs)
    assert firsts == sorted(r["instruction"] for r in records)
    again = split_file(path, (0.7, 0.15, 0.15), 1, tmp_path / "out2")
    assert (tmp_path / "out2" / "d.train.json").read_text() == (tmp_path / "out" / "d.train.json").read_text()
    with pytest.raises(DataError, match="overwrite"):
        split_file(path, (0.7, 0.15, 0.15), 1, tmp_path / "out")
    assert again


@pytest.mark.parametrize("target", ["alpaca", "sharegpt", "messages"])
def test_convert_round_trips(tmp_path: Path, target: str) -> None:
    records = [{"instruction": "Add", "input": "1+1", "output": "2", "system": "Be exact.", "history": [["hi", "hello"]]}]
    src = load_data(DataConfig(datasets=[str(write_json(tmp_path / "a.json", records))])).examples
    converted, problems = convert_examples(src, target)
    assert not problems
    back = load_data(DataConfig(datasets=[str(write_json(tmp_path / "b.json", converted))])).examples
    assert [(m.role, m.content) for m in back[0].messages] == [(m.role, m.content) for m in src[0].messages]
    assert back[0].system == "Be exact."


def test_convert_reports_what_the_target_cannot_hold(tmp_path: Path) -> None:
    tool_conv = {"conversations": [{"from": "human", "value": "t?"},
                                   {"from": "function_call", "value": '{"name": "f", "arguments": {}}'},
                                   {"from": "observation", "value": "1"}, {"from": "gpt", "value": "one"}]}
    src = load_data(DataConfig(datasets=[str(write_json(tmp_path / "s.json", [tool_conv]))])).examples
    converted, problems = convert_examples(src, "alpaca")
    assert not converted and problems and problems[0].index == 0


def test_truncated_and_dropped_examples_are_warned_about_alike_by_check_and_training(
        tmp_path: Path, tokenizer: Any, chat_template: Any) -> None:
    from tuneforge.training.data import prepare

    pairs = [{"instruction": f"Question {i}: " + ("tell me more " * (60 if i % 4 == 0 else 2)),
              "chosen": f"yes {i} " + ("and more " * (40 if i % 4 == 1 else 1)), "rejected": f"no {i}"}
             for i in range(40)]  # 10 prompts too long (dropped), 10 answers too long (truncated)
    path = write_json(tmp_path / "pairs.json", pairs)
    cfg = RunConfig(data=DataConfig(datasets=[str(path)], max_length=96, split=[1.0, 0.0, 0.0]),
                    training={"stage": "dpo"})
    trained = prepare(cfg, tokenizer, chat_template, "dpo").report["warnings"]
    checked = [w for w in check_data(cfg, tokenizer, chat_template).to_json()["warnings"]
               if w["field"] == "data.max_length"]
    assert trained == checked and len(trained) == 1  # the same numbers, the same words
    w = trained[0]
    assert w["message"].startswith("20 of 40 examples (50%)") and "10 truncated" in w["message"]
    assert "10 dropped (prompt longer than max_length: 10)" in w["message"]
    keep = int(w["fix"].split("data.max_length: ")[1].split()[0])
    lengths = prepare(cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": keep})}), tokenizer,
                      chat_template, "dpo")
    assert lengths.report["processed"]["dropped"] == {} and lengths.report["processed"]["truncated"] <= 2
    assert lengths.report["warnings"] == []  # 95% kept whole: under the 5% threshold, training stays quiet
