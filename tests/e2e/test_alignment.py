"""Every alignment stage x (full, lora) on a tiny random model: finite loss, trained parameters moved,
reference untouched, and an interrupted run resumes on the same curve."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from tests.conftest import write_json
from tests.e2e.conftest import write_config
from tuneforge.config.load import load_config
from tuneforge.evaluation.held_out import HEADLINE
from tuneforge.training.runner import train

PAIRS = [{"instruction": f"What is {a} plus {b}?", "input": "", "chosen": f"{a} plus {b} is {a + b}.",
          "rejected": f"I do not know {a}."} for a in range(8) for b in range(5)]
KTO = [{"instruction": f"What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}." if (a + b) % 3 else "No idea.",
        "kto_tag": bool((a + b) % 3)} for a in range(8) for b in range(5)]
QA = [{"instruction": f"What is {a} plus {b}?", "input": "", "output": str(a + b)} for a in range(8) for b in range(5)]
#: Sampling stages: a tiny random model never answers exactly (every reward 0, no signal); reward the
#: character length of its random answers instead, which varies within each group.
SAMPLING = {"rewards": ["tests.e2e.test_alignment:char_length"], "max_new_tokens": 8, "num_generations": 2}
DATA = {"rm": PAIRS, "dpo": PAIRS, "simpo": PAIRS, "orpo": PAIRS, "kto": KTO, "grpo": QA, "ppo": QA}
#: Stages that train against a frozen reference (the others are reference-free).
WITH_REFERENCE = ("dpo", "kto", "grpo", "ppo")


def char_length(prompts: list[Any], completions: list[str], **_: Any) -> list[float]:
    """A user reward function (given as module:function): longer answers (in characters) score higher."""
    return [len(text) / 50 for text in completions]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("rm")
    result = _run(tmp, tiny_model_dir, "rm", "lora")
    return result.run.root


def _run(tmp: Path, model: Path, stage: str, method: str, callbacks: list[Any] | None = None,
         held_out: bool = False, **alignment: Any) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    data = write_json(tmp / f"{stage}.json", DATA[stage])
    extra = SAMPLING if stage in ("grpo", "ppo") else {}
    cfg = write_config(tmp, model, data, training={"stage": stage, "max_steps": 4, "save_steps": 2, "eval_steps": 2},
                       method={"name": method}, alignment={**extra, **alignment},
                       evaluation={"auto": held_out, "max_samples": 4, "forgetting": False})
    return train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None, callbacks=callbacks)


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _base_state(model: Any) -> dict[str, torch.Tensor]:
    """Base-model weights by their plain name (PEFT prefixes and adapter layers stripped)."""
    out = {}
    for name, p in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue
        out[name.replace("base_model.model.", "").replace(".base_layer", "")] = p.detach()
    return out


def _changed(before: dict[str, torch.Tensor], model: Any) -> set[str]:
    # compared in the dtype the weight is held in: an adapter's frozen base may be bf16 (training.frozen_precision)
    return {k for k, v in _base_state(model).items() if k in before and not torch.equal(v, before[k].to(v.dtype))}


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("stage", ["rm", "dpo", "simpo", "orpo", "kto", "grpo", "ppo"])
def test_stage_trains(tmp_path: Path, tiny_model_dir: Path, reward_model: Path, stage: str, method: str) -> None:
    extra = {"reward_model": str(reward_model)} if stage == "ppo" else {}
    result = _run(tmp_path, tiny_model_dir, stage, method, held_out=True, **extra)
    rows = [r for r in _rows(result.run.root) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in rows)
    before = _weights(tiny_model_dir)
    if method == "full":
        assert _changed(before, result.model), "no base weight moved"
    else:
        assert not _changed(before, result.model), "LoRA changed base weights (the reference)"
        lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
        assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
        assert set(result.model.peft_config) == {"default"}  # no second adapter copy as reference
    if stage in WITH_REFERENCE and method == "full":
        assert result.reference is not None
        assert not _changed(before, result.reference), "the reference model moved"
    assert (result.run.root / "plots" / "alignment.png").is_file()
    meta = json.loads((result.run.model / "tuneforge_training.json").read_text())
    assert meta["stage"] == stage
    held = json.loads((result.run.root / "eval" / "metrics.json").read_text())  # judged on the validation split
    assert held["stage"] == stage and held["n"] >= 1 and {"base", "tuned"} == set(held["metrics"])
    for headline in HEADLINE[stage]:  # grpo, ppo: greedy and sampled reward
        assert headline in held["metrics"]["base"] and headline in held["metrics"]["tuned"]
        assert f"{headline}" in (result.run.root / "report.md").read_text()
    if "sampled_reward" in HEADLINE[stage]:  # per prompt too, for a paired standard error of the gain
        preds = [json.loads(x) for x in (result.run.root / "eval" / "predictions.jsonl").read_text().splitlines()]
        for label in ("base", "tuned"):
            mean = sum(r[f"sampled_reward_{label}"] for r in preds) / len(preds)
            assert mean == pytest.approx(held["metrics"][label]["sampled_reward"])


@pytest.mark.ci  # ~20 s: kept out of `make test` (15-minute budget); `.ci/run` runs it with `make test-ci`
def test_dpo_held_out_preference_rises_and_eval_reports_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The pairs are learnable (a sum against "I do not know"): on held-out pairs the tuned policy prefers the
    chosen answer more than the base does, and `tuneforge eval RUN --json` reports the same figures."""
    import subprocess
    import sys

    data = write_json(tmp_path / "dpo.json", PAIRS)
    cfg = write_config(tmp_path, tiny_model_dir, data, training={"stage": "dpo", "max_steps": 12, "eval_steps": 100,
                                                                "save_steps": 100})
    said: list[str] = []
    result = train(load_config(cfg), str(cfg), progress=False, echo=said.append)
    auto = json.loads((result.run.root / "eval" / "metrics.json").read_text())["metrics"]
    assert auto["base"]["preference_accuracy"] == 0.5 and auto["base"]["reward_margin"] == 0.0
    assert auto["tuned"]["preference_accuracy"] >= 0.75 and auto["tuned"]["reward_margin"] > 0.5
    assert any("better than base on preference_accuracy" in line for line in said)
    out = subprocess.run([sys.executable, "-m", "tuneforge.cli.main", "eval", str(result.run.root), "--json"],
                         capture_output=True, text=True, check=True)
    cli = json.loads(out.stdout)["metrics"]
    assert cli["tuned"]["preference_accuracy"] == auto["tuned"]["preference_accuracy"]
    assert abs(cli["tuned"]["reward_margin"] - auto["tuned"]["reward_margin"]) < 0.05 * abs(auto["tuned"]["reward_margin"])


@pytest.mark.parametrize("stage", ["rm", "dpo", "simpo", "orpo", "kto", "grpo", "ppo"])
def test_stage_trains_with_qlora(tmp_path: Path, tiny_model_dir: Path, reward_model: Path, stage: str) -> None:
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is installed only on Linux")
    extra = {"reward_model": str(reward_model)} if stage == "ppo" else {}
    result = _run(tmp_path, tiny_model_dir, stage, "qlora", **extra)
    rows = [r for r in _rows(result.run.root) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(math.isfinite(r["loss"]) for r in rows)
    assert any("Linear4bit" in type(m).__name__ for m in result.model.modules())
    assert any(p.abs().sum() > 0 for n, p in result.model.named_parameters() if "lora_B" in n)
    trainable = {p.dtype for p in result.model.parameters() if p.requires_grad}
    assert trainable == {torch.float32}  # not TRL's bf16 cast: this CPU computes in fp32


def test_stage_metrics_are_logged(tmp_path: Path, tiny_model_dir: Path, reward_model: Path) -> None:
    logged = {}
    for stage, keys in {"dpo": ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
                        "kto": ("rewards/chosen", "rewards/rejected", "kl"), "grpo": ("reward", "kl"),
                        "ppo": ("reward", "kl")}.items():
        extra = {"reward_model": str(reward_model)} if stage == "ppo" else {}
        run = _run(tmp_path / stage, tiny_model_dir, stage, "lora", **extra).run.root
        rows = _rows(run)
        logged[stage] = {k for r in rows for k in r}
        assert all(k in logged[stage] for k in keys), (stage, logged[stage])
    rm_rows = _rows(reward_model)
    assert any("eval_accuracy" in r for r in rm_rows)
    assert "pairwise accuracy on the validation split" in (reward_model / "report.md").read_text()


class _InterruptAt(TrainerCallback):
    """Sends this process Ctrl-C during a step: the run saves a checkpoint and stops, as from a terminal."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGINT)


# orpo, kto and grpo resume through the same callback as the other stages; they run in CI only (`make
# test-ci`), ~90 s of `make test` on a CPU without bf16.
@pytest.mark.parametrize("stage", ["rm", "dpo", "simpo", "ppo",
                                   *(pytest.param(s, marks=pytest.mark.ci) for s in ("orpo", "kto", "grpo"))])
def test_interrupted_stage_resumes_on_the_same_curve(tmp_path: Path, tiny_model_dir: Path, reward_model: Path,
                                                     stage: str) -> None:
    extra = {"reward_model": str(reward_model)} if stage == "ppo" else {}
    whole = _rows(_run(tmp_path / "a", tiny_model_dir, stage, "lora", **extra).run.root)
    first = _run(tmp_path / "b", tiny_model_dir, stage, "lora", callbacks=[_InterruptAt(2)], **extra)
    assert first.interrupted and first.steps == 2
    second = _run(tmp_path / "b", tiny_model_dir, stage, "lora", **extra)
    assert not second.interrupted and second.steps == 4
    resumed = {r["step"]: r["loss"] for r in _rows(second.run.root) if "loss" in r}
    reference = {r["step"]: r["loss"] for r in whole if "loss" in r}
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-4), (stage, step, resumed, reference)


def test_score_command_ranks_pairs_like_the_validation_accuracy(tmp_path: Path, reward_model: Path) -> None:
    from typer.testing import CliRunner

    from tuneforge.cli.main import app

    data = write_json(tmp_path / "pairs.json", PAIRS[:12])
    out = CliRunner().invoke(app, ["score", str(reward_model), "--data", str(data), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["n"] == 12 and all("score_chosen" in r and "score_rejected" in r for r in result["rows"])
    evals = [r["eval_accuracy"] for r in _rows(reward_model) if "eval_accuracy" in r]
    # the same kind of pairs as the validation split: accuracy within the trained model's reach
    assert result["accuracy"] >= min(evals[-1], 0.9) - 0.25
    sft = write_json(tmp_path / "qa.json", QA[:3])
    out = CliRunner().invoke(app, ["score", str(reward_model), "--data", str(sft), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["accuracy"] is None


def test_reward_model_reward_scores_decoded_answers_as_the_reward_model_was_trained(tmp_path: Path,
                                                                                 reward_model: Path) -> None:
    """GRPO's reward_model reward and PPO's held-out reward get decoded answers (no end-of-turn token); they must
    score them as `tuneforge score` and the training did, with the end-of-turn token the score is read at."""
    from tuneforge.config.schema import RunConfig
    from tuneforge.data.records import Message
    from tuneforge.data.templates import resolve_template
    from tuneforge.evaluation.score import score_file
    from tuneforge.models.reward import RewardScorer, reward_template
    from tuneforge.training.rewards import build_rewards

    cfg = RunConfig.model_validate({"data": {"datasets": ["x.json"]},
                                    "alignment": {"rewards": ["reward_model"], "reward_model": str(reward_model)}})
    (fn,) = build_rewards(cfg)
    pairs = PAIRS[:4]
    scored = score_file(str(reward_model), str(write_json(tmp_path / "pairs.json", pairs))).rows
    tokenizer = RewardScorer.load(str(reward_model)).tokenizer
    eot = reward_template(tokenizer, str(reward_model)).eot
    assert eot  # the tokenizer's ChatML template ends answers with a special token
    template = resolve_template("auto", tokenizer, None)
    prompts = [template.prompt([Message(role="user", content=p["instruction"])]) for p in pairs]
    plain = fn(prompts=prompts, completions=[p["chosen"] for p in pairs])
    ended = fn(prompts=prompts, completions=[p["chosen"] + eot for p in pairs])
    assert plain == pytest.approx([r["score_chosen"] for r in scored], abs=1e-4)
    assert ended == pytest.approx(plain, abs=1e-6)  # an answer that kept its end-of-turn token is not doubled


def test_reward_model_exports_with_its_head_and_scores_the_same(tmp_path: Path, reward_model: Path) -> None:
    from tuneforge.evaluation.score import score_file
    from tuneforge.export import export_run

    result = export_run(str(reward_model), str(tmp_path / "merged"))
    assert result.verification.max_logit_diff < 1e-4
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    data = str(write_json(tmp_path / "pairs.json", PAIRS[:6]))
    adapter, merged = score_file(str(reward_model), data), score_file(str(tmp_path / "merged"), data)
    for a, b in zip(adapter.rows, merged.rows, strict=True):
        assert a["score_chosen"] == pytest.approx(b["score_chosen"], abs=1e-3)


@pytest.mark.parametrize("stage", ["dpo", pytest.param("kto", marks=pytest.mark.ci)])  # kto: CI only, ~27 s
def test_precomputed_reference_gives_the_same_first_losses(tmp_path: Path, tiny_model_dir: Path, stage: str) -> None:
    live = _rows(_run(tmp_path / "live", tiny_model_dir, stage, "lora").run.root)
    pre = _rows(_run(tmp_path / "pre", tiny_model_dir, stage, "lora", precompute_ref=True).run.root)
    a = {r["step"]: r["loss"] for r in live if "loss" in r}
    b = {r["step"]: r["loss"] for r in pre if "loss" in r}
    assert sorted(b) == [1, 2, 3, 4]
    # The reference is fixed either way: the same log-probs, the same losses. Up to bf16 rounding, which
    # depends on how the reference batches were formed and on the thread count: with one thread (a test
    # worker pinned to a core) step 4 differed by 1.6e-4. A wrong reference moves the loss by far more.
    for step in (1, 2, 3, 4):
        assert b[step] == pytest.approx(a[step], abs=5e-4), (step, a, b)
