"""Classification data: {text, label} and {tokens, tags} in JSON and CSV, their errors, ids and word alignment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.loader import load_data, require_usable
from tuneforge.data.processors import ProcessOptions, process_examples
from tuneforge.data.processors.labels import IGNORE, label_set, word_pieces
from tuneforge.data.records import Example, Origin
from tuneforge.data.templates import resolve_template
from tuneforge.utils.errors import DataError


def _load(path: Path) -> Any:
    return load_data(DataConfig(datasets=[DatasetSpec(path=str(path))]))


def test_text_label_json_and_csv_are_detected_and_parsed(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"text": "great film", "label": "pos"}, {"text": "dull", "label": 0}]))
    (tmp_path / "b.csv").write_text("text,label\n\"loved it, truly\",pos\n太难看了,neg\n", encoding="utf-8")
    a, b = _load(tmp_path / "a.json"), _load(tmp_path / "b.csv")
    assert [(e.kind, e.text, e.category) for e in a.examples] == [("cls", "great film", "pos"), ("cls", "dull", "0")]
    assert [(e.text, e.category) for e in b.examples] == [("loved it, truly", "pos"), ("太难看了", "neg")]
    assert b.reports[0].format == "classification"


def test_tokens_tags_accept_lists_json_cells_and_spaced_strings(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(json.dumps({"tokens": ["Alice", "runs"], "tags": ["B-PER", "O"]}) + "\n")
    (tmp_path / "t.csv").write_text('tokens,tags\nBob lives here,B-PER O O\n"[""北"", ""京""]","[""B-LOC"", ""I-LOC""]"\n')
    jl, csv = _load(tmp_path / "t.jsonl"), _load(tmp_path / "t.csv")
    assert (jl.examples[0].words, jl.examples[0].tags) == (["Alice", "runs"], ["B-PER", "O"])
    assert [(e.words, e.tags) for e in csv.examples] == [(["Bob", "lives", "here"], ["B-PER", "O", "O"]),
                                                          (["北", "京"], ["B-LOC", "I-LOC"])]


def test_every_bad_record_is_reported_with_file_record_and_field(tmp_path: Path) -> None:
    rows = [{"text": "ok", "label": "pos"}, {"text": "", "label": "neg"}, {"text": "no label"},
            {"text": "list label", "label": ["a"]}]
    (tmp_path / "bad.json").write_text(json.dumps(rows, indent=1))
    (tmp_path / "tags.json").write_text(json.dumps([{"tokens": ["a", "b"], "tags": ["O"]},
                                                    {"tokens": [], "tags": []}]))
    data, tags = _load(tmp_path / "bad.json"), _load(tmp_path / "tags.json")
    found = {(p.index, p.field) for p in data.errors}
    assert found == {(1, "text"), (2, "label"), (3, "label")}
    assert all(p.file.endswith("bad.json") and p.fix for p in data.errors)
    assert {(p.index, p.field) for p in tags.errors} == {(0, "tags"), (1, "tokens"), (1, "tags")}
    assert "1 tags for 2 tokens" in tags.errors[0].message
    with pytest.raises(DataError):
        require_usable(data, "seq_cls")


def test_classification_data_is_refused_by_other_stages_and_vice_versa(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps([{"text": "fine", "label": "pos"}]))
    with pytest.raises(DataError) as info:
        require_usable(_load(tmp_path / "c.json"), "sft")
    assert "seq_cls" in str(info.value.problems[0].fix)
    with pytest.raises(DataError):
        require_usable(_load(tmp_path / "c.json"), "token_cls")


def test_label_set_sorts_names_and_integers_numerically() -> None:
    o = Origin("d", "f", 0)
    assert label_set([Example("cls", o, category=c) for c in ("b", "a", "b")]) == ["a", "b"]
    assert label_set([Example("cls", o, category=c) for c in ("10", "2", "1")]) == ["1", "2", "10"]
    assert label_set([Example("tagging", o, words=["x", "y"], tags=["O", "B-LOC"])]) == ["B-LOC", "O"]


def test_ids_truncation_and_unknown_labels(tokenizer: Any) -> None:
    o = Origin("d", "f.json", 3, line=7)
    opts = ProcessOptions(tokenizer, resolve_template("auto", tokenizer), 8, labels={"neg": 0, "pos": 1})
    out = process_examples([Example("cls", o, text="nice", category="pos"),
                            Example("cls", o, text="awful " * 20, category="neg")], opts)
    assert out.columns["labels"] == [1, 0] and len(out.columns["input_ids"][1]) == 8
    assert out.stats.truncated == 1 and out.stats.lengths[1] > 8
    with pytest.raises(DataError) as info:
        process_examples([Example("cls", o, text="meh", category="neutral")], opts)
    p = info.value.problems[0]
    assert (p.file, p.index, p.field) == ("f.json", 3, "label") and "neutral" in p.message


def test_word_pieces_keep_spaces_and_label_only_first_tokens(tokenizer: Any) -> None:
    words = ["Alice", "visited", "Paris", "北", "京"]
    pieces = word_pieces(words, tokenizer)
    whole = tokenizer("Alice visited Paris 北京", add_special_tokens=False)["input_ids"]
    assert [i for p in pieces[:3] for i in p] == whole[: sum(len(p) for p in pieces[:3])]  # as in the sentence
    assert tokenizer.decode(pieces[4]) == "京"  # no space between CJK characters
    o = Origin("d", "f", 0)
    tags = {"B-LOC": 0, "B-PER": 1, "I-LOC": 2, "O": 3}
    opts = ProcessOptions(tokenizer, resolve_template("auto", tokenizer), 64, labels=tags)
    out = process_examples([Example("tagging", o, words=words, tags=["B-PER", "O", "B-LOC", "B-LOC", "I-LOC"])], opts)
    labels = out.columns["labels"][0]
    firsts = [lab for lab in labels if lab != IGNORE]
    assert firsts == [1, 3, 0, 0, 2] and len(labels) == sum(len(p) for p in pieces)
    assert labels.count(IGNORE) == sum(len(p) - 1 for p in pieces)
