"""Config schema, YAML + overrides, and error reporting (every problem at once, with the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.config import load_config, parse_overrides
from tuneforge.utils.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "data:\n  datasets: [identity]\n  dataset_info: x.json\n"))
    assert cfg.model.name_or_path == "default"
    assert cfg.data.datasets[0].name == "identity"
    assert cfg.data.split == (0.7, 0.15, 0.15)
    assert cfg.training.stage == "sft" and cfg.training.learning_rate is None
    assert cfg.method.lora.rank == 8


def test_string_datasets_become_names_or_paths() -> None:
    cfg = load_config(base={"data": {"datasets": ["identity", "data/x.json", "y.jsonl", "z.csv"]}})
    assert [(d.name, d.path) for d in cfg.data.datasets] == [
        ("identity", None), (None, "data/x.json"), (None, "y.jsonl"), (None, "z.csv")]


def test_every_error_is_reported_at_once_with_suggestions(tmp_path: Path) -> None:
    path = _write(tmp_path, """
data:
  datasets: [identity]
  max_lenght: 512
  max_length: abc
training:
  stage: sftt
  learning_rate: -1
method:
  name: lroa
  lora: {rnak: 4}
modle: {}
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = {p.field: p for p in info.value.problems}
    assert set(problems) == {"data.max_lenght", "data.max_length", "training.stage", "training.learning_rate",
                             "method.name", "method.lora.rnak", "modle"}
    assert "Did you mean 'max_length'?" in problems["data.max_lenght"].message
    assert "Did you mean 'sft'?" in problems["training.stage"].message
    assert "sft, pt" in (problems["training.stage"].fix or "")
    assert "'lora'" in problems["method.name"].message
    assert "rank" in problems["method.lora.rnak"].message
    assert "'abc'" in problems["data.max_length"].message
    assert "greater than 0" in problems["training.learning_rate"].message
    assert all(p.file == str(path) for p in problems.values())
    assert info.value.exit_code == 2


def test_overrides_are_typed_and_validated() -> None:
    base = {"data": {"datasets": [{"path": "a.json"}]}}
    cfg = load_config(base=base, overrides=["training.learning_rate=2e-4", "data.max_length=256",
                                            "template.train_on_prompt=true", "method.lora.targets=[q_proj,v_proj]",
                                            "data.datasets.0.ratio=0.5"])
    assert cfg.training.learning_rate == 2e-4
    assert cfg.data.max_length == 256
    assert cfg.template.train_on_prompt is True
    assert cfg.method.lora.targets == ["q_proj", "v_proj"]
    assert cfg.data.datasets[0].ratio == 0.5
    with pytest.raises(ConfigError) as info:
        load_config(base=base, overrides=["training.learning_rat=1", "noequals"])
    assert [p.field for p in info.value.problems] == ["noequals"]  # malformed overrides are reported first
    with pytest.raises(ConfigError) as info:
        load_config(base=base, overrides=["training.learning_rat=1"])
    assert "Did you mean 'learning_rate'?" in info.value.problems[0].message
    with pytest.raises(ConfigError) as info:
        load_config(base={"data": {"datasets": ["a.json"]}}, overrides=["data.datasets.0.ratio=0.5"])
    assert "holds a value" in info.value.problems[0].message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  datasets: [a\n  max_length: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line is not None and info.value.problems[0].file == str(path)


def test_dataset_spec_needs_name_or_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(base={"data": {"datasets": [{"name": "a", "path": "b"}, {"format": "alpaca"}]}})
    assert [p.field for p in info.value.problems] == ["data.datasets[0]", "data.datasets[1]"]


def test_parse_overrides_reads_yaml_values() -> None:
    assert parse_overrides(["a.b=1", "c=x", "d=[1, 2]", "e="]) == [
        (["a", "b"], 1), (["c"], "x"), (["d"], [1, 2]), (["e"], "")]


def test_every_example_config_validates() -> None:
    from pathlib import Path

    from tuneforge.config import load_config

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
    assert len(examples) >= 4
    for path in examples:
        cfg = load_config(str(path))
        assert cfg.data.datasets, path.name
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path.name} must start with how to run it"
