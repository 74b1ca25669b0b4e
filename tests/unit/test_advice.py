"""Advice rules (docs/advice.md), tuning-method options, precision choice and the disk-space check."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tuneforge.advice.recommend import recommend, step_warnings, total_steps
from tuneforge.config.schema import RunConfig
from tuneforge.models.tuning import TUNING
from tuneforge.training.precision import choose_precision


def _cfg(**sections: Any) -> RunConfig:
    return RunConfig.model_validate({"data": {"datasets": ["x.json"]}, **sections})


@pytest.mark.parametrize("n,epochs", [(90, 15), (1_000, 10), (10_000, 3), (30_000, 4), (100_000, 2)])
def test_epochs_follow_the_data_size(n: int, epochs: int) -> None:
    cfg, advice = recommend(_cfg(), n, 135_000_000)
    assert cfg.training.epochs == epochs
    assert any(a.key == "training.epochs" and str(n) in a.reason for a in advice)


@pytest.mark.parametrize("method,params,lr", [("lora", 1.35e8, 2e-4), ("lora", 7e9, 1e-4), ("full", 1.35e8, 1e-4),
                                              ("full", 7e9, 1e-5), ("qlora", 70e9, 5e-5)])
def test_learning_rate_by_size_and_method(method: str, params: float, lr: float) -> None:
    cfg, _ = recommend(_cfg(method={"name": method}), 1000, int(params))
    assert cfg.training.learning_rate == lr


@pytest.mark.parametrize("stage,lr", [("dpo", 6e-5), ("simpo", 6e-5), ("orpo", 6e-5), ("kto", 6e-5),
                                      ("grpo", 2e-4), ("ppo", 2e-4), ("rm", 2e-4), ("sft", 2e-4)])
def test_alignment_learning_rates_are_the_measured_share_of_the_sft_rate(stage: str, lr: float) -> None:
    """bench/alignment_lr.py on the shipped dpo example: 2e-5 (a tenth) learned less than 6e-5 in one epoch."""
    cfg, advice = recommend(_cfg(training={"stage": stage}), 1000, 135_000_000)
    assert cfg.training.learning_rate == lr
    reason = next(a.reason for a in advice if a.key == "training.learning_rate")
    assert ("measured on the shipped examples" in reason) == (stage not in ("rm", "sft", "ppo"))
    assert ("not measured on its own" in reason) == (stage == "ppo")  # PPO borrows GRPO's share: say so


def test_user_values_are_kept_and_lora_alpha_is_twice_the_rank() -> None:
    cfg, advice = recommend(_cfg(training={"learning_rate": 3e-5, "epochs": 1}, method={"lora": {"rank": 32}}),
                            500, 10**8)
    assert cfg.training.learning_rate == 3e-5 and cfg.training.epochs == 1
    assert cfg.method.lora.alpha == 64 and cfg.method.lora.dropout == 0.05
    assert not any(a.key in ("training.learning_rate", "training.epochs") for a in advice)
    assert cfg.training.warmup_ratio == 0.1  # small data


@pytest.mark.parametrize("n_eval,every", [(0, 20), (10, 20), (100, 25), (1_000, 200)])
def test_evaluations_cost_no_more_than_the_training_between_them(n_eval: int, every: int) -> None:
    # 200 steps of 4 rows: ~10 evaluations (every 20), unless the validation split is bigger than
    # the 80 rows trained in 20 steps; never spaced beyond the end of training.
    cfg, _ = recommend(_cfg(training={"max_steps": 200, "batch_size": 2, "gradient_accumulation": 2}), 5000,
                       10**8, n_eval=n_eval)
    assert cfg.training.eval_steps == every
    assert cfg.training.save_steps == every


def test_steps_and_low_step_warning() -> None:
    cfg, _ = recommend(_cfg(training={"batch_size": 4, "gradient_accumulation": 4, "epochs": 1}), 40, 10**8)
    assert total_steps(cfg, 40) == 3
    assert step_warnings(cfg, 40) and "lower training.batch_size" in step_warnings(cfg, 40)[0]
    cfg.training.max_steps = 100
    assert total_steps(cfg, 40) == 100 and not step_warnings(cfg, 40)
    cfg.training.max_steps = 10
    assert "training.max_steps is 10" in step_warnings(cfg, 40)[0]


@pytest.mark.parametrize(("stage", "n", "batch", "moved"), [
    ("dpo", 60, None, {"training.gradient_accumulation"}),  # 3 epochs x 60 / 12 = 15 steps: accumulation halves
    ("dpo", 20, None, {"training.batch_size"}),  # 3 x 20 / 4 = 15: the batch halves
    ("dpo", 3000, 256, {"training.epochs"}),  # the user's batch stays: 1 -> 2 epochs
    ("sft", 1000, None, set()),
])
def test_the_advice_never_plans_a_run_it_warns_against(stage: str, n: int, batch: int | None, moved: set[str]) -> None:
    cfg, filled = recommend(_cfg(training={"stage": stage, "batch_size": batch}), n, 10**8)
    assert not step_warnings(cfg, n) and total_steps(cfg, n) >= 20
    assert {a.key for a in filled if "at least 20 optimizer steps" in a.reason} == moved
    assert cfg.training.epochs <= (3 if stage == "dpo" else 15)  # within the overfitting limits


def test_too_little_data_is_named_and_user_values_are_kept() -> None:
    cfg, _ = recommend(_cfg(training={"stage": "dpo"}), 4, 10**8)  # the 4-pair format demo
    assert (cfg.training.batch_size, cfg.training.gradient_accumulation, cfg.training.epochs) == (1, 1, 3)
    assert "too few even at batch 1 and 3 epochs" in step_warnings(cfg, 4)[0]
    cfg, filled = recommend(_cfg(training={"stage": "dpo", "batch_size": 8}), 60, 10**8)
    assert cfg.training.batch_size == 8 and "training.batch_size" not in {a.key for a in filled}


def test_lora_options_reach_peft(tokenizer: Any) -> None:
    from tuneforge.models.tiny import tiny_model

    cfg = _cfg(method={"name": "dora", "lora": {"rank": 4, "use_rslora": True, "init": "pissa",
                                                "targets": "attention"}})
    peft_cfg = TUNING.get("dora").peft_config(tiny_model(tokenizer), cfg)
    assert peft_cfg.use_dora and peft_cfg.use_rslora and peft_cfg.init_lora_weights == "pissa"
    assert set(peft_cfg.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_freeze_refuses_more_layers_than_exist(tokenizer: Any) -> None:
    from tuneforge.models.tiny import tiny_model
    from tuneforge.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="too many trainable layers"):
        TUNING.get("freeze").apply(tiny_model(tokenizer), _cfg(method={"name": "freeze",
                                                                      "freeze": {"trainable_layers": 5}}))


def test_precision_can_be_forced_and_auto_is_measured() -> None:
    assert choose_precision("fp32").name == "fp32"
    auto = choose_precision("auto")
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert auto.name in ("bf16", "fp32", "fp16") and auto.reason


def test_disk_space_is_checked_before_a_checkpoint(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from tuneforge.training.trainer import DiskSpaceError, TuneforgeTrainer

    fake = SimpleNamespace(model=torch.nn.Linear(1000, 1000))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(free=1024, total=0, used=0))
    with pytest.raises(DiskSpaceError) as err:
        TuneforgeTrainer._check_disk(fake, str(tmp_path))  # type: ignore[arg-type]
    assert "MiB free" in err.value.problems[0].message


def test_loraplus_gives_b_matrices_a_higher_learning_rate(tokenizer: Any, tmp_path: Any) -> None:
    from transformers import TrainingArguments

    from tuneforge.models.tiny import tiny_model
    from tuneforge.training.trainer import TuneforgeTrainer

    cfg = _cfg(method={"lora": {"rank": 4, "loraplus_lr_ratio": 16}})
    model = TUNING.get("lora").apply(tiny_model(tokenizer), cfg)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, use_cpu=True, report_to="none")
    trainer = TuneforgeTrainer(model=model, args=args, loraplus_lr_ratio=16)
    lrs = {g["lr"] for g in trainer.create_optimizer().param_groups if g["params"]}
    assert lrs == {1e-4, 1.6e-3}


def test_cpu_without_bf16_instructions_is_fp32_without_a_probe() -> None:
    from tuneforge.training.precision import cpu_precision

    def never() -> float:
        raise AssertionError("no probe without bf16 instructions")

    p = cpu_precision(frozenset(), never)
    assert p.name == "fp32" and "no bf16 instructions" in p.reason


@pytest.mark.parametrize(("flags", "speedup", "want"), [
    (frozenset({"amx_bf16", "avx512_bf16"}), 4.2, "bf16"),
    (frozenset({"avx512_bf16"}), 1.6, "bf16"),
    (frozenset({"amx_bf16"}), 1.05, "fp32"),  # the flag is there, the speed is not: say so
])
def test_cpu_with_bf16_instructions_is_confirmed_by_the_probe(flags: frozenset[str], speedup: float,
                                                              want: str) -> None:
    from tuneforge.training.precision import cpu_precision

    p = cpu_precision(flags, lambda: speedup)
    assert p.name == want
    assert all(f in p.reason for f in flags) and f"{speedup:.2f}x" in p.reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Any) -> None:
    from tuneforge.training.precision import cpu_bf16_flags

    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n")
    old = tmp_path / "old"
    old.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_bf16_flags(str(amx)) == {"avx512_bf16", "amx_bf16"}
    assert cpu_bf16_flags(str(old)) == frozenset()
    assert cpu_bf16_flags(str(tmp_path / "missing")) == frozenset()
