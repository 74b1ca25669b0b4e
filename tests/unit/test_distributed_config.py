"""The distributed section: validation, what each strategy asks of transformers, the DeepSpeed JSON, the
refusals, the global batch in the advice and the memory plan, and --print-launch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneforge.advice.recommend import recommend, setup_from_config
from tuneforge.config import load_config
from tuneforge.distributed import strategies
from tuneforge.distributed.strategies import STRATEGIES, deepspeed_config, global_batch
from tuneforge.distributed.support import distributed_problems
from tuneforge.training.stages import STAGES
from tuneforge.utils.errors import ConfigError


def _cfg(**dist: Any) -> Any:
    overrides = [f"distributed.{k}={v}" for k, v in dist.items() if k not in ("stage", "method", "training")]
    overrides += [f"training.{k}={v}" for k, v in dist.get("training", {}).items()]
    if "stage" in dist:
        overrides.append(f"training.stage={dist['stage']}")
    if "method" in dist:
        overrides.append(f"method.name={dist['method']}")
    return load_config(base={"data": {"datasets": ["d.json"]}}, overrides=overrides)


@pytest.mark.parametrize(("overrides", "key", "words"), [
    (["distributed.node_rank=2", "distributed.nnodes=2"], "distributed", "node_rank 2 is outside 0..1"),
    (["distributed.nproc_per_node=0"], "distributed.nproc_per_node", "'auto' (every GPU)"),
    (["distributed.offload=optimizer+params", "distributed.zero_stage=2"], "distributed", "needs zero_stage 3"),
    (["distributed.strategy=megatron"], "distributed.strategy", "megatron"),
])
def test_bad_distributed_values_name_the_key_and_the_fix(overrides: list[str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"data": {"datasets": ["d.json"]}}, overrides=overrides)
    text = str(err.value)
    assert key in text and words in text


def test_each_strategy_selects_its_engine_in_the_trainer_arguments() -> None:
    assert STRATEGIES.get("none").training_args(_cfg(), "fp32", 1) == {}
    ddp = STRATEGIES.get("ddp").training_args(_cfg(strategy="ddp", timeout=42), "fp32", 2)
    assert ddp == {"ddp_find_unused_parameters": False, "ddp_timeout": 42}
    cfg = _cfg(strategy="fsdp", **{"fsdp.sharding": "shard_grad_op", "fsdp.cpu_offload": "true",
                                   "fsdp.activation_checkpointing": "true"})
    fsdp = STRATEGIES.get("fsdp").training_args(cfg, "bf16", 2)
    assert fsdp["fsdp"] is True and fsdp["fsdp_config"]["version"] == 2
    assert fsdp["fsdp_config"]["reshard_after_forward"] is False and fsdp["fsdp_config"]["cpu_offload"] is True
    assert fsdp["fsdp_config"]["activation_checkpointing"] is True
    assert STRATEGIES.get("fsdp").sharding(cfg) == strategies.Sharding(2, True)
    assert STRATEGIES.get("fsdp").sharding(_cfg(strategy="fsdp")).zero_stage == 3  # full_shard is ZeRO-3-like


def test_generated_deepspeed_json_follows_the_run_config() -> None:
    cfg = _cfg(strategy="deepspeed", zero_stage=3, offload="optimizer+params",
               training={"batch_size": 2, "gradient_accumulation": 4, "max_grad_norm": 0.5})
    ds = deepspeed_config(cfg, "bf16", 4)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (2, 4, 32)
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu" and zero["stage3_gather_16bit_weights_on_model_save"]
    plain = deepspeed_config(_cfg(strategy="deepspeed", zero_stage=1), "fp32", 2)["zero_optimization"]
    assert plain["stage"] == 1 and "offload_optimizer" not in plain and "offload_param" not in plain


def test_a_users_deepspeed_json_is_checked_not_silently_overridden(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": "auto",
                                "zero_optimization": {"stage": 3, "reduce_bucket_size": 1000}}))
    cfg = _cfg(strategy="deepspeed", zero_stage=2, deepspeed_config=str(path), training={"batch_size": 2})
    with pytest.raises(ConfigError) as err:
        deepspeed_config(cfg, "fp32", 2)
    problems = {p.field: p for p in err.value.problems}
    assert set(problems) == {"train_micro_batch_size_per_gpu", "zero_optimization.stage"}
    assert problems["zero_optimization.stage"].file == str(path)
    assert "distributed.zero_stage" in problems["zero_optimization.stage"].fix
    path.write_text(json.dumps({"gradient_accumulation_steps": "auto", "zero_optimization": {"reduce_bucket_size": 1000}}))
    merged = deepspeed_config(cfg, "fp32", 2)
    assert merged["gradient_accumulation_steps"] == 1 and merged["zero_optimization"]["stage"] == 2
    assert merged["zero_optimization"]["reduce_bucket_size"] == 1000  # the user's own settings are kept
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        deepspeed_config(cfg, "fp32", 2)


@pytest.mark.parametrize(("settings", "field", "fix"), [
    ({"strategy": "ddp", "nproc_per_node": 2, "stage": "ppo"}, "distributed.strategy", "strategy none"),
    ({"strategy": "fsdp", "nproc_per_node": 2, "stage": "dpo"}, "distributed.strategy", "strategy ddp"),
    ({"strategy": "deepspeed", "nproc_per_node": 2, "method": "qlora"}, "method.name", "strategy ddp with qlora"),
    ({"strategy": "ddp", "nproc_per_node": 2, "method": "adalora"}, "method.name", "adalora in one process"),
    ({"strategy": "none", "nproc_per_node": 2}, "distributed.strategy", "ddp, fsdp or deepspeed"),
    ({"strategy": "fsdp", "nproc_per_node": 2, "fsdp.activation_checkpointing": "true"},
     "distributed.fsdp.activation_checkpointing", "training.gradient_checkpointing"),
])
def test_what_a_strategy_cannot_run_is_refused_naming_what_would(settings: dict[str, Any], field: str,
                                                                 fix: str) -> None:
    cfg = _cfg(**settings)
    problems = distributed_problems(cfg, STAGES.get(cfg.training.stage))
    assert any(p.field == field and fix in (p.fix or "") for p in problems), problems


def test_progressive_unfreezing_is_refused_under_data_parallelism() -> None:
    cfg = load_config(base={"data": {"datasets": ["d.json"]}, "method": {"name": "freeze",
                                                                      "freeze": {"unfreeze_at": [0.5]}},
                            "distributed": {"strategy": "ddp", "nproc_per_node": 2}})
    problems = distributed_problems(cfg, STAGES.get("sft"))
    assert [p.field for p in problems] == ["method.freeze.unfreeze_at"]


def test_device_map_auto_and_a_data_parallel_strategy_are_refused_together() -> None:
    cfg = load_config(base={"data": {"datasets": ["d.json"]}, "model": {"device_map": "auto"},
                            "distributed": {"strategy": "ddp", "nproc_per_node": 2}})
    problems = distributed_problems(cfg, STAGES.get("sft"))
    assert [p.field for p in problems] == ["model.device_map"]


def test_a_missing_deepspeed_package_is_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = strategies.importlib.util.find_spec
    monkeypatch.setattr(strategies.importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepspeed" else real(name, *a))
    problems = distributed_problems(_cfg(strategy="deepspeed", nproc_per_node=2), STAGES.get("sft"))
    assert len(problems) == 1 and "deepspeed package" in problems[0].message
    assert "pip install 'tuneforge[deepspeed]'" in (problems[0].fix or "")


def test_the_advice_plans_the_global_batch_and_the_sharded_memory() -> None:
    one = _cfg(training={"batch_size": 2})
    four = _cfg(strategy="ddp", nproc_per_node=4, training={"batch_size": 2})
    one_filled, _ = recommend(one, 1000, 135_000_000)
    four_filled, advice = recommend(four, 1000, 135_000_000)
    assert one_filled.training.gradient_accumulation == 4 * four_filled.training.gradient_accumulation
    assert global_batch(one_filled) == global_batch(four_filled) == 16  # the same global batch
    reason = next(a.reason for a in advice if a.key == "training.gradient_accumulation")
    assert "x 4 processes" in reason
    sharded = setup_from_config(_cfg(strategy="deepspeed", nproc_per_node=4, zero_stage=3, offload="optimizer"),
                                on_gpu=True)
    assert (sharded.zero_stage, sharded.offload, sharded.devices) == (3, True, 4)
    assert setup_from_config(four, on_gpu=True).zero_stage == 0


def test_print_launch_gives_one_command_per_machine(tmp_path: Path) -> None:
    from tuneforge.cli.main import app

    cfg = tmp_path / "run.yaml"
    cfg.write_text("data: {datasets: [d.json]}\ndistributed: {strategy: fsdp, nnodes: 3, nproc_per_node: 2, "
                   "master_addr: 10.0.0.1, master_port: 29555}\n")
    out = CliRunner().invoke(app, ["train", str(cfg), "training.seed=1", "--print-launch"])
    assert out.exit_code == 0, out.output
    commands = [ln for ln in out.output.splitlines() if ln.startswith("tuneforge train")]
    assert len(commands) == 3
    for k, command in enumerate(commands):
        assert f"distributed.node_rank={k}" in command and "distributed.master_port=29555" in command
        assert "training.seed=1" in command
    assert "torchrun --nnodes=3 --nproc_per_node=2" in out.output and "--master_addr=10.0.0.1" in out.output


def test_a_saved_model_without_weights_is_an_error_not_a_finished_run(tmp_path: Path) -> None:
    """The check that caught peft's empty adapter under FSDP's checkpoint wrappers."""
    import torch
    from safetensors.torch import save_file

    from tuneforge.training.runner import _require_weights
    from tuneforge.utils.errors import TuneforgeError

    save_file({}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(TuneforgeError, match="the saved model is empty"):
        _require_weights(tmp_path, adapter=True)
    save_file({"a.lora_A.weight": torch.ones(2, 3)}, str(tmp_path / "adapter_model.safetensors"))
    _require_weights(tmp_path, adapter=True)
