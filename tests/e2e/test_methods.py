"""The other PEFT-family methods end to end: each learns, trains only its own parameters, evaluates,
chats and exports (merged and verified where the method merges)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tests.e2e.conftest import losses, write_config
from tuneforge.cli.main import app
from tuneforge.config import load_config
from tuneforge.config.catalog import method_spec
from tuneforge.training.runner import train
from tuneforge.utils.errors import ConfigError

pytestmark = pytest.mark.slow
#: What each method's own parameters are called inside the peft model (bitfit trains the base's biases).
OWN = {"adalora": ("lora_A", "lora_B", "lora_E"), "ia3": ("ia3_l",), "ln_tuning": ("ln_tuning_layers",),
       "prompt": ("prompt_encoder",), "ptuning": ("prompt_encoder",), "prefix": ("prompt_encoder",),
       "adapter": ("bottleneck_",)}
#: Learning rates that move these few parameters visibly within 10 steps of a tiny random model.
LR = {"adalora": 5e-3, "ia3": 5e-2, "ln_tuning": 2e-2, "bitfit": 1e-2, "prompt": 5e-2, "ptuning": 5e-3,
      "prefix": 2e-2, "adapter": 5e-3}
METHODS = ["adalora", "ia3", "ln_tuning", "bitfit", "prompt", "ptuning", "prefix", "adapter"]


@pytest.fixture(scope="module")
def bias_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """The tiny model with biases on the attention and MLP projections (so bitfit has something to train)."""
    from tuneforge.models.tiny import save_tiny

    return save_tiny(tokenizer, tmp_path_factory.mktemp("tiny-bias"), attention_bias=True, mlp_bias=True)


def _initial(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


def _base_view(model: Any, own: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The base model's parameters under their transformers names (the method's own ones left out)."""
    out = {}
    for name, p in model.named_parameters():
        if any(o in name for o in own):
            continue
        out[name.replace("base_model.model.", "").replace(".base_layer", "")] = p.detach()
    return out


def _train(tmp_path: Path, model_dir: Path, data: Path, method: str, **method_cfg: Any) -> Any:
    cfg = write_config(tmp_path, model_dir, data, method={"name": method, **method_cfg},
                       data={"split": [0.7, 0.15, 0.15]},
                       training={"learning_rate": LR.get(method, 5e-3), "max_steps": 10, "eval_steps": 5},
                       evaluation={"max_new_tokens": 8, "auto": False})
    return train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)


@pytest.mark.parametrize("method", METHODS)
def test_method_learns_trains_only_its_parameters_evaluates_and_exports(
        tmp_path: Path, bias_model_dir: Path, sft_data: Path, method: str) -> None:
    from tuneforge.data.records import Message
    from tuneforge.export import export_run
    from tuneforge.inference import Engine, GenerationOptions

    result = _train(tmp_path, bias_model_dir, sft_data, method)
    curve = losses(result.run.root)
    assert curve[10] < curve[1], curve
    own = OWN.get(method, ())
    before, after = _initial(bias_model_dir), _base_view(result.model, own)
    changed = {k for k, v in after.items() if k in before and not torch.equal(v, before[k].to(v.dtype))}
    if method == "bitfit":
        assert changed and all(k.endswith(".bias") for k in changed)
        assert "model.layers.0.self_attn.q_proj.bias" in changed
    else:  # the base is untouched; the method's own parameters moved from their initial values
        assert not changed, sorted(changed)[:5]
        mine = {n: p.detach() for n, p in result.model.named_parameters() if any(o in n for o in own)}
        assert mine and all(p.requires_grad for n, p in result.model.named_parameters() if n in mine)
        moved = {"ia3": lambda p: not torch.equal(p, torch.ones_like(p)),
                 "adalora": lambda p: p.abs().sum() > 0,
                 "adapter": lambda p: p.abs().sum() > 0}.get(method)  # the up-projections start at zero
        if moved:
            assert any(moved(p) for p in mine.values())
    # eval on the held-out test split: the tuned model predicts the answers better than its base
    out = CliRunner().invoke(app, ["eval", str(result.run.root), "--json"])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.stdout[out.stdout.index("{"):])["metrics"]
    assert metrics["tuned"]["ppl"] < metrics["base"]["ppl"], metrics
    # export merges what can be merged, else saves the adapter saying why; both verified against the run;
    # chat answers the same from the run and the export
    exported, spec = export_run(str(result.run.root), str(tmp_path / "out")), method_spec(method)
    assert exported.merged == (spec.adapter and spec.merges)
    assert exported.verification.ok and exported.verification.max_logit_diff < 1e-3
    if spec.adapter and not spec.merges:
        assert "cannot be merged" in exported.note and spec.merge_blocker in exported.note
        assert (tmp_path / "out" / "adapter_config.json").is_file()
        meta = json.loads((tmp_path / "out" / "tuneforge_training.json").read_text())
        assert meta["merged"] is False and meta["not_merged_because"] == spec.merge_blocker
    ask, opts = [Message("user", "What is 1 plus 2?")], GenerationOptions(8, 0.0)
    assert Engine.load(str(result.run.root)).chat(ask, opts) == Engine.load(str(tmp_path / "out")).chat(ask, opts)


def test_adalora_schedule_follows_the_run_and_the_budget_is_reallocated(tmp_path: Path, tiny_model_dir: Path,
                                                                        sft_data: Path) -> None:
    result = _train(tmp_path, tiny_model_dir, sft_data, "adalora", adalora={"warmup_share": 0.2, "final_share": 0.3})
    saved = json.loads((result.run.model / "adapter_config.json").read_text())
    assert (saved["total_step"], saved["tinit"], saved["tfinal"]) == (10, 2, 3)
    assert saved["init_r"] == 6 and saved["target_r"] == 4  # 1.5 x method.lora.rank 4, cut to 4 on average
    kept = [sum(mask) for mask in saved["rank_pattern"].values()]
    assert kept and sum(kept) < 6 * len(kept)  # ranks were cut: the budget moved between layers


def test_adalora_penalty_is_peft_s_own(tiny_model_dir: Path, tokenizer: Any) -> None:
    """PEFT adds the orthogonality penalty only to a loss the model computes from labels; ours adds the
    same term through the trainer. Both must agree."""
    from transformers import AutoModelForCausalLM

    from tuneforge.config import RunConfig
    from tuneforge.models.tuning import TUNING

    cfg = RunConfig.model_validate({"data": {"datasets": ["x.json"]}, "method": {"name": "adalora", "lora": {"rank": 4}}})
    method = TUNING.get("adalora")
    model = method.apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    ids = torch.tensor([tokenizer("one two three four")["input_ids"]])
    with_penalty = model(input_ids=ids, labels=ids).loss
    model.peft_config["default"].orth_reg_weight = 0.0
    plain = model(input_ids=ids, labels=ids).loss
    model.peft_config["default"].orth_reg_weight = 0.5
    ours = method.regularizer(model)
    assert ours.requires_grad and float(ours) > 0
    assert abs(float(with_penalty - plain) - float(ours)) < 1e-5


def test_progressive_unfreezing_starts_the_lower_layer_at_its_fraction(tmp_path: Path, tiny_model_dir: Path,
                                                                        sft_data: Path) -> None:
    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):
        seen: dict[int, torch.Tensor] = {}

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.seen[state.global_step] = model.model.layers[0].self_attn.q_proj.weight.detach().clone()

    cfg = write_config(tmp_path, tiny_model_dir, sft_data, training={"learning_rate": 1e-3, "max_steps": 10},
                       method={"name": "freeze", "freeze": {"trainable_layers": 1, "unfreeze_at": [0.5]}})
    snap = Snapshot()
    result = train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None, callbacks=[snap])
    start = _initial(tiny_model_dir)["model.layers.0.self_attn.q_proj.weight"]
    assert all(torch.equal(snap.seen[s], start) for s in range(1, 5))  # frozen for the first half
    assert not torch.equal(snap.seen[10], start)  # and trained after step 5
    assert losses(result.run.root)[10] < losses(result.run.root)[1]
    assert torch.equal(result.model.model.embed_tokens.weight, _initial(tiny_model_dir)["model.embed_tokens.weight"])


def test_bitfit_on_a_model_without_biases_names_its_architecture(tmp_path: Path, tiny_model_dir: Path,
                                                                 sft_data: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _train(tmp_path, tiny_model_dir, sft_data, "bitfit")
    (problem,) = info.value.problems
    assert "LlamaForCausalLM" in problem.message and "'llama'" in problem.message and problem.field == "method.name"


@pytest.mark.parametrize("settings", [{"name": "ptuning"}, {"name": "prefix", "prompt_learning": {"prefix_projection": True}}])
def test_a_reparameterised_prompt_encoder_resumes_exactly(tmp_path: Path, tiny_model_dir: Path, sft_data: Path,
                                                          settings: dict[str, Any]) -> None:
    """peft saves these adapters as the virtual tokens their encoder produces; a checkpoint also holds the
    encoder itself, so a run interrupted at step 5 continues with the same losses as one never stopped."""
    import os
    import signal

    from transformers import TrainerCallback

    from tuneforge.training.trainer import PROMPT_ENCODER_FILE

    class CtrlC(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 4:
                os.kill(os.getpid(), signal.SIGINT)

    steps = {"learning_rate": 5e-3, "max_steps": 10, "save_steps": 100, "eval_steps": 100}
    runs = {}
    for name, callbacks in (("a", []), ("b", [CtrlC()])):
        cfg = write_config(tmp_path / name, tiny_model_dir, sft_data, method=settings, training=steps,
                           evaluation={"auto": False, "forgetting": False})
        runs[name] = train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None, callbacks=callbacks)
    assert runs["b"].interrupted
    assert (runs["b"].run.root / "checkpoints" / "checkpoint-5" / PROMPT_ENCODER_FILE).is_file()
    cfg = tmp_path / "b" / "run.yaml"
    train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)
    ours, theirs = losses(runs["b"].run.root), losses(runs["a"].run.root)
    assert sorted(ours) == list(range(1, 11))
    for step in range(6, 11):
        assert abs(ours[step] - theirs[step]) < 1e-5, (step, ours[step], theirs[step])


@pytest.mark.parametrize(("method", "context", "fix"), [("lora", 100, "at most 100"), ("prompt", 140, "at most 120")])
def test_max_length_beyond_the_model_s_context_is_refused(tmp_path: Path, tokenizer: Any, sft_data: Path,
                                                          method: str, context: int, fix: str) -> None:
    """data.max_length 128 (+ 20 virtual tokens for prompt tuning) against max_position_embeddings."""
    from tuneforge.models.tiny import save_tiny

    model = save_tiny(tokenizer, tmp_path / "short", max_position_embeddings=context)
    cfg = write_config(tmp_path, model, sft_data, method={"name": method})
    with pytest.raises(ConfigError) as info:
        train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)
    (problem,) = info.value.problems
    assert problem.field == "data.max_length" and str(context) in problem.message and fix in problem.fix
    assert not (tmp_path / "runs" / "r" / "model").exists()
