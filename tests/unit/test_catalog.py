"""config/catalog.py is the one source of stage and method names: every consumer agrees with it."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest

from tuneforge.config import RunConfig
from tuneforge.config.catalog import (
    METHOD_NAMES,
    METHOD_TABLE,
    STAGE_NAMES,
    STAGE_TABLE,
    default_stage_of_kind,
    method_spec,
    stage_spec,
)
from tuneforge.config.schema import Method, Stage
from tuneforge.data.records import Kind
from tuneforge.utils.errors import ConfigError

DATA = {"datasets": ["x.json"]}


def _cfg(**sections: dict) -> RunConfig:
    return RunConfig.model_validate({"data": DATA, **sections})


def _impl_class(impl: str) -> tuple[str, str]:
    module, _, cls = impl.partition(":")
    return module, cls


def test_names_are_unique_and_the_schema_allows_exactly_them() -> None:
    assert len(set(STAGE_NAMES)) == len(STAGE_NAMES) and len(set(METHOD_NAMES)) == len(METHOD_NAMES)
    assert get_args(Stage) == STAGE_NAMES and get_args(Method) == METHOD_NAMES
    for stage in STAGE_NAMES:
        assert _cfg(training={"stage": stage}).training.stage == stage
    for method in METHOD_NAMES:
        assert _cfg(method={"name": method}).method.name == method
    # the defaults are the tables' first rows, and every row's summary reaches the schema description
    assert _cfg().training.stage == STAGE_NAMES[0] and _cfg().method.name == METHOD_NAMES[0]
    described = RunConfig.model_json_schema()["$defs"]["TrainingConfig"]["properties"]["stage"]["description"]
    assert all(f"{s.name}: {s.summary}" in described for s in STAGE_TABLE)


def test_an_unknown_stage_is_refused_with_the_table_names(tmp_path) -> None:
    from tuneforge.config.load import load_config

    path = tmp_path / "c.yaml"
    path.write_text("data: {datasets: [x.json]}\ntraining: {stage: dpoo}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = [p for p in info.value.problems if p.field == "training.stage"]
    assert "Did you mean 'dpo'?" in problem.message
    assert all(name in (problem.fix or "") for name in STAGE_NAMES)


def test_the_registries_hold_the_table_rows_in_order() -> None:
    from tuneforge.models.tuning import TUNING
    from tuneforge.training.stages import STAGES

    assert [name for name, _ in STAGES.items()] == list(STAGE_NAMES)
    for spec in STAGE_TABLE:
        stage = STAGES.get(spec.name)
        assert (type(stage).__module__, type(stage).__name__) == _impl_class(spec.impl)
        assert stage.name == spec.name  # the class's own name agrees with its row
    assert [name for name, _ in TUNING.items()] == list(METHOD_NAMES)
    for spec in METHOD_TABLE:
        method = TUNING.get(spec.name)
        assert (type(method).__module__, type(method).__name__) == _impl_class(spec.impl)
        assert method.adapter == spec.adapter  # adapters are saved apart from the base, the others whole


def test_the_loader_and_the_checker_read_the_stage_table() -> None:
    from tuneforge.data.check import infer_stage
    from tuneforge.data.loader import STAGE_KINDS, _kind_fix

    kinds = set(get_args(Kind))
    assert STAGE_KINDS == {s.name: s.kinds for s in STAGE_TABLE}
    assert all(s.kinds and s.kinds <= kinds for s in STAGE_TABLE)
    # every example kind has a stage to check it against by default, and that stage trains on it
    assert set(default_stage_of_kind()) == kinds
    for kind, stage in default_stage_of_kind().items():
        assert kind in stage_spec(stage).kinds
    assert infer_stage([]) == "sft"
    # the fix for a wrong kind names every stage of the table that takes it
    for kind in kinds:
        takers = [s.name for s in STAGE_TABLE if kind in s.kinds]
        assert all(name in _kind_fix(kind) for name in takers)
        assert not any(f" {s.name}" in _kind_fix(kind) for s in STAGE_TABLE if s.name not in takers)


def test_evaluation_and_advice_read_the_stage_table() -> None:
    from tuneforge.advice.recommend import ALIGNMENT_LR_SHARE, ALIGNMENT_STAGES, LORA_METHODS, SIGNAL_STAGES
    from tuneforge.evaluation.held_out import EVALUATORS, HEADLINE

    evaluated = [s.name for s in STAGE_TABLE if s.evaluation]
    assert EVALUATORS.names() == sorted(evaluated) and sorted(HEADLINE) == sorted(evaluated)
    # the language stages are judged by generation metrics; everything else has a held-out evaluation
    assert {s.name for s in STAGE_TABLE if not s.evaluation} == {s.name for s in STAGE_TABLE if s.family == "language"}
    assert ALIGNMENT_STAGES == tuple(s.name for s in STAGE_TABLE if s.aligns) == tuple(ALIGNMENT_LR_SHARE)
    assert "rm" in SIGNAL_STAGES and "rm" not in ALIGNMENT_STAGES and "sft" not in SIGNAL_STAGES
    assert LORA_METHODS == tuple(m.name for m in METHOD_TABLE if m.family == "lora")
    assert [m.name for m in METHOD_TABLE if m.quantised] == ["qlora"] and method_spec("qlora").uses_lora


def test_the_web_ui_menus_are_the_tables() -> None:
    from tuneforge.webui.app import METHODS, STAGES

    assert STAGES == list(STAGE_NAMES) and METHODS == list(METHOD_NAMES)


def test_reading_the_table_loads_no_torch() -> None:
    code = "import sys, tuneforge.config.catalog, tuneforge.config.schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
