"""LLaMA-Factory's real demo files: exact counts read directly and through their dataset_info.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_json
from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.loader import load_data, require_usable
from tuneforge.utils.errors import DataError

#: name -> (file, records, kind)
EXPECTED = {
    "identity": ("identity.json", 91, "sft"),
    "alpaca_en_demo": ("alpaca_en_demo.json", 999, "sft"),
    "alpaca_zh_demo": ("alpaca_zh_demo.json", 1000, "sft"),
    "glaive_toolcall_en_demo": ("glaive_toolcall_en_demo.json", 300, "sft"),
    "dpo_en_demo": ("dpo_en_demo.json", 300, "pairwise"),
    "dpo_zh_demo": ("dpo_zh_demo.json", 300, "pairwise"),
    "kto_en_demo": ("kto_en_demo.json", 300, "unpaired"),
    "c4_demo": ("c4_demo.jsonl", 300, "pt"),
    "wiki_demo": ("wiki_demo.txt", 30, "pt"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_entries_load_unchanged(fixtures_dir: Path, name: str) -> None:
    _, count, kind = EXPECTED[name]
    data = load_data(DataConfig(datasets=[name], dataset_info=str(fixtures_dir / "dataset_info.json")))
    assert not data.errors, [e.render() for e in data.errors]
    assert len(data.examples) == count
    assert {ex.kind for ex in data.examples} == {kind}


@pytest.mark.parametrize("name", ["identity", "alpaca_en_demo", "alpaca_zh_demo", "c4_demo", "wiki_demo",
                                  "kto_en_demo"])
def test_files_read_directly_with_detection(fixtures_dir: Path, name: str) -> None:
    file, count, kind = EXPECTED[name]
    data = load_data(DataConfig(datasets=[str(fixtures_dir / file)]))
    assert not data.errors
    assert len(data.examples) == count and {ex.kind for ex in data.examples} == {kind}


def test_dpo_and_glaive_read_directly_as_sharegpt(fixtures_dir: Path) -> None:
    dpo = load_data(DataConfig(datasets=[str(fixtures_dir / "dpo_en_demo.json")]))
    assert len(dpo.examples) == 300 and {ex.kind for ex in dpo.examples} == {"pairwise"}
    tools = load_data(DataConfig(datasets=[str(fixtures_dir / "glaive_toolcall_en_demo.json")]))
    assert len(tools.examples) == 300
    with_calls = [ex for ex in tools.examples if any(m.role == "tool_call" for m in ex.messages)]
    assert with_calls and all(ex.tools for ex in with_calls)


def test_mixing_registry_entries(fixtures_dir: Path) -> None:
    cfg = DataConfig(datasets=[DatasetSpec(name="identity"), DatasetSpec(name="alpaca_en_demo", max_samples=100)],
                     dataset_info=str(fixtures_dir / "dataset_info.json"),
                     placeholders={"name": "Forge", "author": "Acme"})
    data = load_data(cfg)
    assert len(data.examples) == 191 and not data.unfilled
    assert any("Forge" in ex.messages[-1].content for ex in data.examples)


def test_identity_without_placeholders_warns_and_strict_refuses(fixtures_dir: Path) -> None:
    data = load_data(DataConfig(datasets=["identity"], dataset_info=str(fixtures_dir / "dataset_info.json")))
    assert data.unfilled["name"] > 0 and data.unfilled["author"] > 0
    with pytest.raises(DataError) as err:
        require_usable(data, "sft", strict_placeholders=True)
    assert "placeholders" in str(err.value.problems[0].field)


def test_hub_entries_fail_with_a_local_file_message(fixtures_dir: Path) -> None:
    info = (fixtures_dir / "dataset_info.json").read_text(encoding="utf-8")
    hub_names = [n for n in ("alpaca_en", "alpaca_gpt4_en", "ultrachat_200k", "mllm_demo") if f'"{n}"' in info]
    assert hub_names, "the fixture registry should hold at least one hub or multimodal entry"
    data = load_data(DataConfig(datasets=hub_names[:1], dataset_info=str(fixtures_dir / "dataset_info.json")))
    assert not data.examples and data.errors
    text = data.errors[0].render()
    assert hub_names[0] in text and ("local" in text or "multimodal" in text or "image" in text)


def test_unknown_name_suggests_the_closest(fixtures_dir: Path) -> None:
    data = load_data(DataConfig(datasets=["alpaca_en_dmeo"], dataset_info=str(fixtures_dir / "dataset_info.json")))
    assert data.errors and "alpaca_en_demo" in data.errors[0].render()


def test_registry_name_without_dataset_info_says_what_to_add(tmp_path: Path) -> None:
    data = load_data(DataConfig(datasets=["identity"]))
    assert data.errors and "dataset_info" in data.errors[0].render()


def test_hub_entry_in_own_registry(tmp_path: Path) -> None:
    write_json(tmp_path / "dataset_info.json", {"remote": {"hf_hub_url": "someone/data"}})
    data = load_data(DataConfig(datasets=["remote"], dataset_info=str(tmp_path / "dataset_info.json")))
    assert data.errors and "local" in data.errors[0].render()


def test_unknown_name_in_own_registry_lists_close_names(tmp_path: Path) -> None:
    write_json(tmp_path / "dataset_info.json", {"my_identity": {"file_name": "id.json"}, "my_alpaca": {"file_name": "a.json"}})
    data = load_data(DataConfig(datasets=["my_identiy"], dataset_info=str(tmp_path / "dataset_info.json")))
    text = data.errors[0].render()
    assert "my_identity" in text and "dataset_info.json" in text
