"""Resource estimates (docs/advice.md), the memory-based batch, recommend/estimate commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tests.conftest import write_json
from tuneforge.advice.estimate import (
    Setup,
    hosted_cost,
    largest_batch,
    memory_gib,
    model_shape,
    shape_from_numbers,
    trainable_params,
)
from tuneforge.advice.recommend import worth_tuning
from tuneforge.cli.main import app

runner = CliRunner()


def test_the_seed_example_6_7b_in_fp16_needs_12_5_gib_of_weights() -> None:
    mem = memory_gib(shape_from_numbers(6.7e9), Setup(method="full", precision="fp16"))
    assert mem["weights"] == pytest.approx(12.48, abs=0.01)
    # full fine-tuning adds fp16 gradients and 12 bytes of Adam state per parameter
    assert mem["gradients"] == pytest.approx(12.48, abs=0.01) and mem["optimizer"] == pytest.approx(74.9, abs=0.1)


def test_memory_shrinks_with_lora_qlora_checkpointing_zero_and_offload() -> None:
    shape = shape_from_numbers(7e9)
    full = memory_gib(shape, Setup(method="full"))
    lora = memory_gib(shape, Setup(method="lora"))
    qlora = memory_gib(shape, Setup(method="qlora"))
    assert lora["optimizer"] < full["optimizer"] / 100 and qlora["weights"] < lora["weights"] / 3
    ckpt = memory_gib(shape, Setup(method="lora", gradient_checkpointing=True))
    assert ckpt["activations"] < lora["activations"] / 5
    zero3 = memory_gib(shape, Setup(method="full", zero_stage=3, devices=4))
    assert zero3["weights"] == pytest.approx(full["weights"] / 4) and zero3["optimizer"] == pytest.approx(full["optimizer"] / 4)
    off = memory_gib(shape, Setup(method="full", zero_stage=2, offload=True))
    assert off["optimizer"] == 0 and off["offloaded_to_cpu"] == pytest.approx(full["optimizer"])
    assert memory_gib(shape, Setup(batch=8))["activations"] > memory_gib(shape, Setup(batch=4))["activations"]


def test_lora_trainable_parameters_equal_peft_count(tiny_model_dir: Path) -> None:
    shape = model_shape(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.params == sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    expected = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert trainable_params(shape, Setup(method="lora", lora_rank=4)) == expected
    assert trainable_params(shape, Setup(method="full")) == shape.params


def test_batch_fits_the_memory_and_cost_follows_the_seed_formula() -> None:
    shape = shape_from_numbers(7e9)
    small, large = largest_batch(shape, Setup(method="qlora"), 24), largest_batch(shape, Setup(method="qlora"), 80)
    assert 1 <= small < large
    assert memory_gib(shape, Setup(method="qlora", batch=small))["total"] <= 0.8 * 24
    cost = hosted_cost(100_000, 3)
    assert cost["bailian-8b"]["cost"] == pytest.approx(300 * 0.006) and cost["volcano"]["cost"] == pytest.approx(9.0)
    assert hosted_cost(200, 1, {"x": 0.03})["x"]["billed_tokens"] == 1000  # small jobs are billed 1,000 tokens


def test_worth_tuning_reads_an_existing_models_scores() -> None:
    assert worth_tuning({"m": {"bleu4": 12.0, "exact_match": 0.0}}).value == "yes"
    assert worth_tuning({"m": {"bleu4": 61.0, "exact_match": 10.0}}).value == "probably not"


def _records(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"Question number {i}?", "input": "", "output": f"Answer {i}."} for i in range(n)]


@pytest.mark.parametrize(("n", "epochs"), [(143, 15), (1430, 10)])  # ~100 / ~1,000 training examples after a 7:1.5:1.5 split
def test_recommend_command_explains_every_value(tmp_path: Path, tiny_model_dir: Path, n: int, epochs: int) -> None:
    data = write_json(tmp_path / "d.json", _records(n))
    result = runner.invoke(app, ["recommend", "--data", str(data), "--model", str(tiny_model_dir), "method.lora.rank=16",
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    advice = {a["key"]: a for a in out["advice"]}
    assert advice["training.epochs"]["value"] == epochs and "training examples" in advice["training.epochs"]["reason"]
    assert advice["method.lora.alpha"]["value"] == 32 and advice["method.lora.rank"]["value"] == 16
    assert advice["method.name"]["value"] == "lora"
    for key in ("training.learning_rate", "training.warmup_ratio", "training.weight_decay", "training.eval_steps",
                "training.batch_size", "training.gradient_accumulation", "method.lora.dropout", "method.lora.targets",
                "model"):
        assert advice[key]["reason"], key


@pytest.mark.slow
def test_estimate_command_measures_a_probe(tmp_path: Path, tiny_model_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneforge.training.runner as training_runner

    probes: list[Any] = []
    real_train = training_runner.train

    def spy(cfg: Any, **kwargs: Any) -> Any:
        probes.append(cfg)
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(training_runner, "train", spy)
    data = write_json(tmp_path / "d.json", _records(60))
    result = runner.invoke(app, ["estimate", "--data", str(data), "--model", str(tiny_model_dir), "--json",
                                 "--price", "p=0.01", "training.batch_size=2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["memory_gib"]) >= {"weights", "gradients", "optimizer", "activations", "total"}
    assert out["params"] > out["trainable_params"] > 0
    assert out["tokens"] > 0 and out["steps"]["total"] == out["steps"]["per_epoch"] * 15
    assert out["probe_tokens_per_s"] > 0 and out["seconds_estimate"] > 0
    assert out["cost"]["p"]["billed_tokens"] == max(1000, out["tokens"] * 15)
    # the probe is a throw-away run: a few steps, nothing evaluated (no forgetting guard, no test split)
    assert [(p.training.max_steps, p.evaluation.forgetting, p.evaluation.auto) for p in probes] == [(3, False, False)]


@pytest.mark.parametrize(("method", "settings"), [
    ("full", {}), ("freeze", {}), ("bitfit", {}), ("lora", {}), ("dora", {}), ("adalora", {}), ("ia3", {}),
    ("ln_tuning", {}), ("prompt", {}), ("ptuning", {}), ("ptuning", {"encoder": "lstm", "encoder_hidden_size": 24}),
    ("prefix", {}), ("prefix", {"prefix_projection": True, "encoder_hidden_size": 24}), ("adapter", {})])
def test_every_method_s_trainable_estimate_is_its_real_count(tmp_path: Path, tokenizer: Any, method: str,
                                                             settings: dict[str, Any]) -> None:
    """The estimate's rule and the method as applied agree, on a model with biases (for bitfit) and grouped
    queries (prefix tuning stores keys and values at the smaller kv width)."""
    from tuneforge.advice.recommend import setup_from_config
    from tuneforge.config import RunConfig
    from tuneforge.models.tiny import save_tiny
    from tuneforge.models.tuning import TUNING, trainable_summary

    folder = save_tiny(tokenizer, tmp_path / "m", attention_bias=True, num_key_value_heads=2)
    freeze = {"trainable_layers": 1, "unfreeze_at": [0.5]}  # two phases: both layers held for the optimizer
    cfg = RunConfig.model_validate({"data": {"datasets": ["x.json"]},
                                    "method": {"name": method, "lora": {"rank": 4}, "freeze": freeze,
                                               "prompt_learning": {"virtual_tokens": 5, **settings}}})
    model = TUNING.get(method).apply(AutoModelForCausalLM.from_pretrained(folder), cfg)
    real = trainable_summary(model)["trainable"]
    assert trainable_params(model_shape(str(folder)), setup_from_config(cfg, on_gpu=False)) == real


def test_every_method_of_the_table_has_an_estimate_rule() -> None:
    from tuneforge.advice.estimate import TRAINABLE
    from tuneforge.config.catalog import METHOD_NAMES

    assert set(TRAINABLE) == set(METHOD_NAMES)
