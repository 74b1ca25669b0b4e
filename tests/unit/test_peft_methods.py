"""The settings of the PEFT-family methods reach PEFT; AdaLoRA's schedule follows the run's length."""

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


def _ids(tokenizer: Any, text: str = "one two three four five") -> Any:
    import torch

    return torch.tensor([tokenizer(text)["input_ids"]])


def test_virtual_tokens_come_first_in_prompt_tuning_s_logits_and_not_in_prefix_tuning_s(
        tiny_model_dir: Path, tokenizer: Any) -> None:
    ids = _ids(tokenizer)
    for method, extra in (("prompt", 7), ("ptuning", 7), ("prefix", 0)):
        cfg = _cfg(method, prompt_learning={"virtual_tokens": 7})
        model = _applied(tiny_model_dir, cfg)
        assert model.peft_config["default"].num_virtual_tokens == 7
        assert TUNING.get(method).logit_offset(cfg) == extra
        assert model(input_ids=ids).logits.shape[1] == ids.shape[1] + extra


def test_prompt_tuning_starts_from_the_init_text_or_at_random(tiny_model_dir: Path, tokenizer: Any) -> None:
    import torch

    text = "Translate to French:"
    model = _applied(tiny_model_dir, _cfg("prompt", prompt_learning={"virtual_tokens": 4, "init_text": text}))
    start = model.prompt_encoder["default"].embedding.weight
    words = model.get_input_embeddings()(_ids(tokenizer, text)[0][:4])
    assert torch.allclose(start, words)  # the text's first 4 token embeddings
    random = _applied(tiny_model_dir, _cfg("prompt", prompt_learning={"virtual_tokens": 4, "init_text": None}))
    assert not torch.allclose(random.prompt_encoder["default"].embedding.weight, words)


def test_ptuning_encoder_and_its_width_reach_peft(tiny_model_dir: Path) -> None:
    mlp = _applied(tiny_model_dir, _cfg("ptuning", prompt_learning={"encoder_hidden_size": 24}))
    assert mlp.prompt_encoder["default"].mlp_head[0].out_features == 24
    lstm = _applied(tiny_model_dir, _cfg("ptuning", prompt_learning={"encoder": "lstm"}))
    assert lstm.prompt_encoder["default"].lstm_head.hidden_size == 64  # default: the model's hidden size


def test_prefix_projection_trains_an_mlp_over_a_small_embedding(tiny_model_dir: Path) -> None:
    plain = _trainable(_applied(tiny_model_dir, _cfg("prefix", prompt_learning={"virtual_tokens": 3})))
    assert list(plain.values()) == [(3, 2 * 2 * 32)]  # 2 layers x (k, v) x kv width 32 (2 of 4 heads)
    projected = _applied(tiny_model_dir, _cfg("prefix", prompt_learning={"virtual_tokens": 3, "prefix_projection": True,
                                                                          "encoder_hidden_size": 16}))
    assert projected.prompt_encoder["default"].transform[0].out_features == 16


def test_bottleneck_settings_reach_every_adapter(tiny_model_dir: Path) -> None:
    from torch import nn

    from tuneforge.models.tuning.bottleneck import BottleneckLayer

    cfg = _cfg("adapter", adapter={"size": 5, "activation": "gelu", "dropout": 0.1, "targets": ["o_proj"]})
    layers = {n: m for n, m in _applied(tiny_model_dir, cfg).named_modules() if isinstance(m, BottleneckLayer)}
    assert sorted(n.rsplit(".", 1)[-1] for n in layers) == ["o_proj", "o_proj"]  # one per layer, MLP untouched
    for layer in layers.values():
        assert layer.bottleneck_down["default"].out_features == 5
        assert isinstance(layer.bottleneck_act["default"], nn.GELU)
        assert layer.bottleneck_drop["default"].p == 0.1
    default = _applied(tiny_model_dir, _cfg("adapter"))
    sizes = {m.bottleneck_down["default"].out_features for m in default.modules() if isinstance(m, BottleneckLayer)}
    assert sizes == {8}  # hidden 64 / 16 = 4, raised to the minimum 8


def test_an_adapter_starts_as_its_base_and_cannot_merge(tiny_model_dir: Path, tokenizer: Any) -> None:
    import torch

    ids = _ids(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    model = _applied(tiny_model_dir, _cfg("adapter"))
    assert torch.equal(model(input_ids=ids).logits, base)  # up-projections start at zero
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_and_unload()


@pytest.mark.parametrize("stage", ["dpo", "rm", "kto", "grpo"])
def test_virtual_token_methods_are_refused_for_stages_that_do_not_place_them(stage: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="trains only stage sft or pt"):
        RunConfig.model_validate({"data": {"datasets": ["x.json"]}, "method": {"name": "prefix"},
                                  "training": {"stage": stage}})


def test_a_stage_that_a_later_stage_starts_from_must_merge(tmp_path: Path) -> None:
    from tuneforge.training.multistage import train_stages
    from tuneforge.utils.errors import ConfigError

    cfg = RunConfig.model_validate({"data": {"datasets": ["x.json"]}, "output": {"dir": str(tmp_path)},
                                    "stages": [{"name": "a", "method": {"name": "prompt"}}, {"name": "b"},
                                               {"name": "c", "method": {"name": "adapter"}}]})
    with pytest.raises(ConfigError) as info:  # before anything trains or is read
        train_stages(cfg, echo=lambda m: None, progress=False)
    (problem,) = info.value.problems  # the last stage may use it: nothing starts from it
    assert problem.field == "stages[0].method.name" and "prompt" in problem.message
    assert not any(tmp_path.iterdir())


def test_the_server_refuses_a_virtual_token_adapter(tiny_model_dir: Path, tokenizer: Any, chat_template: Any) -> None:
    from tuneforge.inference import Engine
    from tuneforge.server.app import create_app
    from tuneforge.utils.errors import ConfigError

    model = _applied(tiny_model_dir, _cfg("prefix"))
    with pytest.raises(ConfigError) as info:
        create_app({"tuned": Engine(model, tokenizer, chat_template)})
    assert "tuned" in info.value.problems[0].message and "tuneforge chat tuned" in info.value.problems[0].fix
    create_app({"lora": Engine(_applied(tiny_model_dir, _cfg("lora")), tokenizer, chat_template)})  # others serve


@pytest.mark.parametrize(("method", "on_gpu", "padded"), [("prompt", True, True), ("prefix", True, True),
                                                          ("prompt", False, False), ("adapter", True, False)])
def test_virtual_token_methods_pad_gpu_batches(method: str, on_gpu: bool, padded: bool) -> None:
    from tuneforge.training.runner import _method_layout

    cfg, advice = _method_layout(_cfg(method), on_gpu)
    assert cfg.training.padding_free is not padded and bool(advice) is padded


def test_prefix_starts_as_the_base_reading_the_init_text(tiny_model_dir: Path, tokenizer: Any) -> None:
    """Keys and values of the text as the prefix: the logits equal the base's on text + input, exactly."""
    import torch

    text = "Answer briefly and correctly."
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = len(text_ids)
    model = _applied(tiny_model_dir, _cfg("prefix", prompt_learning={"virtual_tokens": n, "init_text": text})).eval()
    ids = _ids(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    both = base(input_ids=torch.tensor([text_ids + ids[0].tolist()])).logits[:, n:]
    assert torch.allclose(model(input_ids=ids).logits, both, atol=1e-4)
    random = _applied(tiny_model_dir, _cfg("prefix", prompt_learning={"virtual_tokens": n, "init_text": None})).eval()
    assert not torch.allclose(random(input_ids=ids).logits, both, atol=1e-2)
