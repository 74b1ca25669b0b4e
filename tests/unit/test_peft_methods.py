"""The settings of adalora, ia3 and ln_tuning reach PEFT; AdaLoRA's schedule follows the run's length."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from tuneforge.config import RunConfig
from tuneforge.models.tuning import TUNING
from tuneforge.models.tuning.schedules import adalora_schedule


def _cfg(method: str, **settings: Any) -> RunConfig:
    return RunConfig.model_validate({"data": {"datasets": ["x.json"]},
                                     "method": {"name": method, "lora": {"rank": 4}, **settings}})


def _applied(tiny_model_dir: Path, cfg: RunConfig) -> Any:
    return TUNING.get(cfg.method.name).apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)


def _trainable(model: Any) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}


def test_ia3_targets_and_feedforward_choose_what_is_rescaled(tiny_model_dir: Path) -> None:
    model = _applied(tiny_model_dir, _cfg("ia3", ia3={"targets": ["q_proj", "down_proj"], "feedforward": ["down_proj"]}))
    shapes = _trainable(model)
    assert {n.split(".")[-3] for n in shapes} == {"q_proj", "down_proj"}
    q = next(s for n, s in shapes.items() if "q_proj" in n)
    down = next(s for n, s in shapes.items() if "down_proj" in n)
    assert q == (64, 1) and down == (1, 128)  # output scaled for attention, input (128 wide) for the FFN layer
    default = _trainable(_applied(tiny_model_dir, _cfg("ia3")))  # peft's llama list: k, v, down
    assert {n.split(".")[-3] for n in default} == {"k_proj", "v_proj", "down_proj"}


def test_ln_tuning_targets_choose_the_norms(tiny_model_dir: Path) -> None:
    only = _trainable(_applied(tiny_model_dir, _cfg("ln_tuning", ln_tuning={"targets": ["input_layernorm"]})))
    assert len(only) == 2 and all("input_layernorm" in n for n in only)  # one per layer
    default = _trainable(_applied(tiny_model_dir, _cfg("ln_tuning")))
    assert len(default) == 5  # both norms of each of the 2 layers and the final norm


def test_a_missing_ia3_target_is_a_config_error(tiny_model_dir: Path) -> None:
    from tuneforge.utils.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _applied(tiny_model_dir, _cfg("ia3", ia3={"targets": ["nope_proj"]}))
    assert info.value.problems[0].field == "method.ia3.targets"
    assert "q_proj" in (info.value.problems[0].fix or "")  # the fix lists the model's own layer names


def test_adalora_init_rank_and_penalty_weight_reach_the_model(tiny_model_dir: Path) -> None:
    model = _applied(tiny_model_dir, _cfg("adalora", adalora={"init_rank": 5}))
    a = next(s for n, s in _trainable(model).items() if "lora_A" in n)
    assert a[0] == 5
    method = TUNING.get("adalora")
    half = float(method.regularizer(model))
    model.peft_config["default"].orth_reg_weight = 1.0
    assert float(method.regularizer(model)) == pytest.approx(2 * half)
    assert _cfg("adalora").method.adalora.orth_reg_weight == 0.5
    assert half > 1e-9  # the default penalty is active


def test_adalora_schedule_is_a_function_of_the_run_length() -> None:
    settings = SimpleNamespace(warmup_share=0.1, final_share=0.2, interval=None)
    assert adalora_schedule(1000, settings) == {"total_step": 1000, "tinit": 100, "tfinal": 200, "deltaT": 14}
    assert adalora_schedule(1000, SimpleNamespace(warmup_share=0.1, final_share=0.2, interval=7))["deltaT"] == 7
    short = adalora_schedule(3, settings)  # even a 3-step run keeps a budgeting phase
    assert short["total_step"] - short["tfinal"] - short["tinit"] >= 1


def test_shares_that_leave_no_budgeting_phase_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="warmup_share"):
        _cfg("adalora", adalora={"warmup_share": 0.6, "final_share": 0.4})
