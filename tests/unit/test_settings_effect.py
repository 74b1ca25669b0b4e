"""Config fields change what happens: each test sets a field and checks the behaviour it is for.

``test_config_coverage.py`` names, for every field of the run config, the test that proves its effect;
many of those tests are here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.conftest import write_jsonl
from tuneforge.config.schema import DataConfig, DatasetSpec, RunConfig
from tuneforge.data.collators import PaddingFreeCollator
from tuneforge.data.loader import load_data
from tuneforge.training.precision import Precision
from tuneforge.training.runner import _training_args
from tuneforge.training.stages import STAGES, StageInputs


def _cfg(**sections: Any) -> RunConfig:
    return RunConfig.model_validate({"data": {"datasets": ["d.json"]}, **sections})


def _args(cfg: RunConfig, has_eval: bool = True) -> dict[str, Any]:
    run = SimpleNamespace(checkpoints=Path("ck"))
    return _training_args(cfg, run, Precision("fp32", "cpu", "test"), has_eval)


# --- data -------------------------------------------------------------------------------------------------

def test_data_max_samples_caps_every_dataset(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": f"x{i}", "output": f"y{i}"} for i in range(10)])
    specs = [DatasetSpec(path=str(a)), DatasetSpec(path=str(b), max_samples=5)]
    data = load_data(DataConfig(datasets=specs, max_samples=3))
    assert [r.used for r in data.reports] == [3, 5]  # the dataset's own max_samples wins over data.max_samples
    assert len(load_data(DataConfig(datasets=specs)).examples) == 15


def test_score_max_samples_scores_only_that_many(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tuneforge.evaluation.score import score_file

    rows = [{"question": f"Pick {i}", "positive_answer": f"Yes {i}.", "negative_answer": f"No {i}."} for i in range(6)]
    result = score_file(str(tiny_model_dir), str(write_jsonl(tmp_path / "p.jsonl", rows)), max_samples=2)
    assert len(result.rows) == 2


# --- model ------------------------------------------------------------------------------------------------

def test_trust_remote_code_reaches_the_tokenizer(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tuneforge.models.loading import load_tokenizer

    seen: list[Any] = []
    real = AutoTokenizer.from_pretrained

    def spy(path: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("trust_remote_code"))
        return real(path, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", spy)
    load_tokenizer(str(tiny_model_dir), trust_remote_code=True)
    load_tokenizer(str(tiny_model_dir))
    assert seen == [True, False]


def test_gguf_file_is_looked_up_in_the_folder(tmp_path: Path) -> None:
    from tuneforge.models.loading import resolve_model
    from tuneforge.utils.errors import ModelError

    with pytest.raises(ModelError) as err:
        resolve_model(str(tmp_path), gguf_file="model.Q4.gguf")
    assert err.value.problems[0].file == str(tmp_path / "model.Q4.gguf")


# --- training ---------------------------------------------------------------------------------------------

TRAINING_ARGS = [
    ("epochs", 3.0, "num_train_epochs", 3.0),
    ("max_steps", 7, "max_steps", 7),
    ("learning_rate", 3e-4, "learning_rate", 3e-4),
    ("batch_size", 6, "per_device_train_batch_size", 6),
    ("gradient_accumulation", 4, "gradient_accumulation_steps", 4),
    ("scheduler", "linear", "lr_scheduler_type", "linear"),
    ("warmup_ratio", 0.2, "warmup_steps", 0.2),
    ("weight_decay", 0.05, "weight_decay", 0.05),
    ("max_grad_norm", 0.3, "max_grad_norm", 0.3),
    ("eval_steps", 9, "eval_steps", 9),
    ("save_steps", 11, "save_steps", 11),
    ("eval_on_start", True, "eval_on_start", True),
    ("save_total_limit", 1, "save_total_limit", 1),
    ("seed", 7, "seed", 7),
    ("logging_steps", 5, "logging_steps", 5),
    ("group_by_length", False, "train_sampling_strategy", "random"),
]


@pytest.mark.parametrize(("field", "value", "key", "want"), TRAINING_ARGS, ids=[t[0] for t in TRAINING_ARGS])
def test_training_fields_reach_the_trainer_arguments(field: str, value: Any, key: str, want: Any) -> None:
    before = _args(_cfg())[key]
    after = _args(_cfg(training={field: value}))[key]
    assert after == want and after != before


def test_padding_free_chooses_the_collator() -> None:
    stage = STAGES.get("sft")
    assert isinstance(stage.collator(_cfg(), None, False), PaddingFreeCollator)
    assert not isinstance(stage.collator(_cfg(training={"padding_free": False}), _Tok(), False), PaddingFreeCollator)


def test_cpu_piece_tokens_reaches_the_trainer_on_cpu_only() -> None:
    """The piece size reaches the trainer; rows are split only on a CPU with padding-free batches."""
    stage, trainer = STAGES.get("sft"), SimpleNamespace()
    stage.configure(trainer, True, _cfg(training={"cpu_piece_tokens": 1024}))
    assert (trainer.split_packed, trainer.piece_tokens) == (True, 1024)
    stage.configure(trainer, False, _cfg(training={"cpu_piece_tokens": 1024}))
    assert trainer.split_packed is False
    stage.configure(trainer, True, _cfg())
    assert trainer.piece_tokens == 1  # default: one sequence at a time, the least memory


class _Tok:
    pad_token_id = 0
    padding_side = "right"

    def pad(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called here
        raise AssertionError


@pytest.mark.parametrize("stage", ["dpo", "simpo", "orpo", "kto", "rm", "grpo", "ppo"])
def test_layout_switches_set_for_a_stage_that_cannot_apply_them_are_warned(stage: str) -> None:
    explicit = _cfg(training={"stage": stage, "padding_free": True, "group_by_length": True})
    lines = STAGES.get(stage).ignored_settings(explicit)
    assert [line.split(":")[0] for line in lines] == ["training.padding_free", "training.group_by_length"]
    assert STAGES.get(stage).ignored_settings(_cfg(training={"stage": stage})) == []  # defaults: no noise
    assert STAGES.get("sft").ignored_settings(explicit) == []


def test_threads_sets_torch_threads() -> None:
    from tuneforge.training.runner import _set_threads

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1  # a value other than the current one (tests pin a worker to one core)
    try:
        _set_threads(_cfg(training={"threads": wanted}))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


# --- alignment --------------------------------------------------------------------------------------------

def _stage_args(stage: str, **alignment: Any) -> dict[str, Any]:
    cfg = _cfg(training={"stage": stage, "batch_size": 2}, alignment=alignment)
    s = StageInputs(cfg, None, None, {}, {}, None, [], False, True)
    return STAGES.get(stage).arguments(s)


ALIGNMENT_ARGS = [
    ("dpo", "beta", 0.3, "beta", 0.3),
    ("dpo", "dpo_loss", "ipo", "loss_type", ["ipo"]),
    ("dpo", "sft_weight", 0.5, "loss_weights", [1.0, 0.5]),
    ("dpo", "precompute_ref", True, "precompute_ref_log_probs", True),
    ("simpo", "simpo_gamma", 1.0, "simpo_gamma", 1.0),
    ("kto", "desirable_weight", 2.0, "desirable_weight", 2.0),
    ("kto", "undesirable_weight", 3.0, "undesirable_weight", 3.0),
    ("grpo", "num_generations", 3, "num_generations", 3),
    ("grpo", "max_new_tokens", 16, "max_completion_length", 16),
    ("grpo", "temperature", 0.5, "temperature", 0.5),
    ("grpo", "kl_coef", 0.2, "beta", 0.2),
    ("grpo", "clip_range", 0.1, "epsilon", 0.1),
    ("grpo", "reward_weights", [1.0, 2.0], "reward_weights", [1.0, 2.0]),
]


@pytest.mark.parametrize(("stage", "field", "value", "key", "want"), ALIGNMENT_ARGS,
                         ids=[f"{t[0]}-{t[1]}" for t in ALIGNMENT_ARGS])
def test_alignment_fields_reach_the_stage_arguments(stage: str, field: str, value: Any, key: str, want: Any) -> None:
    before = _stage_args(stage)[key]
    after = _stage_args(stage, **{field: value})[key]
    assert after == want and after != before


def _ppo_self(**alignment: Any) -> Any:
    a = _cfg(alignment=alignment).alignment
    logps, values = torch.tensor([[-1.0, -0.5]]), torch.tensor([[0.5, 2.0]])
    return SimpleNamespace(a=a, _forward=lambda *args, **kw: (logps, values), _record=lambda **kw: None)


def test_ppo_value_coef_and_clip_range_change_the_loss() -> None:
    from tuneforge.training.stages.ppo import PPOTrainer

    r = {"seq": None, "mask": None, "n_prompt": 0, "answer_mask": torch.ones(1, 2),
         "advantages": torch.tensor([[1.0, -1.0]]), "old_logps": torch.tensor([[-1.5, -0.2]]),
         "values": torch.zeros(1, 2), "returns": torch.tensor([[1.0, 1.0]])}
    base = PPOTrainer._ppo_loss(_ppo_self(), None, r)
    assert PPOTrainer._ppo_loss(_ppo_self(value_coef=1.0), None, r) > base
    assert PPOTrainer._ppo_loss(_ppo_self(clip_range=0.9), None, r) != base


def test_ppo_epochs_reuses_each_rollout_that_many_times() -> None:
    from tuneforge.training.stages.ppo import PPOTrainer

    fake = SimpleNamespace(a=_cfg(alignment={"ppo_epochs": 3}).alignment, train_dataset=list(range(4)),
                           args=SimpleNamespace(per_device_train_batch_size=2, gradient_accumulation_steps=1, seed=0))
    assert len(list(PPOTrainer._get_train_sampler(fake))) == 3 * 4


# --- data: validation files and replay --------------------------------------------------------------------

def _alpaca(path: Path, n: int, word: str) -> Path:
    return write_jsonl(path, [{"instruction": f"{word} {i}?", "output": f"{word} answer {i}."} for i in range(n)])


def test_eval_datasets_replace_the_split(tmp_path: Path, tokenizer: Any, chat_template: Any) -> None:
    from tuneforge.training.data import prepare

    train, val = _alpaca(tmp_path / "t.jsonl", 20, "train"), _alpaca(tmp_path / "v.jsonl", 3, "val")
    split = prepare(_cfg(data={"datasets": [str(train)]}), tokenizer, chat_template, "sft")
    given = prepare(_cfg(data={"datasets": [str(train)], "eval_datasets": [str(val)]}), tokenizer, chat_template, "sft")
    assert given.report["examples"]["validation"] == 3 and given.report["examples"]["train"] == 20
    assert split.report["examples"]["train"] < 20


def test_replay_self_answers_asks_the_model_for_the_replay_answers(tmp_path: Path, tokenizer: Any,
                                                                   chat_template: Any) -> None:
    from tuneforge.training.data import _replay

    replay = _alpaca(tmp_path / "r.jsonl", 5, "general")
    data = {"datasets": ["x.json"], "replay": [str(replay)], "replay_ratio": 0.5}
    answer = lambda prompts: ["own answer"] * len(prompts)  # noqa: E731
    plain = _replay(_cfg(data=data), "sft", 4, answer)
    own = _replay(_cfg(data={**data, "replay_self_answers": True}), "sft", 4, answer)
    assert {ex.messages[-1].content for ex in own} == {"own answer"}
    assert "own answer" not in {ex.messages[-1].content for ex in plain}


# --- alignment rewards, evaluation, search ----------------------------------------------------------------

def test_answer_pattern_decides_what_exact_answer_reads() -> None:
    from tuneforge.training.rewards import exact_answer

    default = exact_answer(_cfg())([""], ["The answer is 12, not 7"], answer=["7"])
    letters = exact_answer(_cfg(alignment={"answer_pattern": r"answer is (\w+)"}))([""], ["The answer is 12, not 7"],
                                                                                  answer=["12"])
    assert default == [1.0] and letters == [1.0]
    assert exact_answer(_cfg())([""], ["The answer is 12, not 7"], answer=["12"]) == [0.0]


def test_normalize_changes_exact_match() -> None:
    from tuneforge.config.schema import EvaluationConfig
    from tuneforge.evaluation.evaluate import score_answers
    from tuneforge.evaluation.sources import EvalItem

    items = [EvalItem([], "Paris.")]
    loose = score_answers(items, {"tuned": ["paris"]}, EvaluationConfig(), {}, echo=lambda _: None)
    strict = score_answers(items, {"tuned": ["paris"]}, EvaluationConfig(normalize=[]), {}, echo=lambda _: None)
    assert loose.metrics["tuned"]["exact_match"] == 100.0 and strict.metrics["tuned"]["exact_match"] == 0.0


def test_evaluation_metrics_computes_only_the_listed_ones() -> None:
    from tuneforge.config.schema import EvaluationConfig
    from tuneforge.evaluation.evaluate import score_answers
    from tuneforge.evaluation.sources import EvalItem

    items = [EvalItem([], "Paris is the capital.")]
    only = score_answers(items, {"tuned": ["Paris is it."]}, EvaluationConfig(metrics=["exact_match"]), {"tuned": 3.0},
                         echo=lambda _: None)
    assert set(only.metrics["tuned"]) == {"exact_match"}
    assert set(only.rows[0]["tuned_scores"]) == {"exact_match"}
    every = score_answers(items, {"tuned": ["Paris is it."]}, EvaluationConfig(), {"tuned": 3.0}, echo=lambda _: None)
    assert set(every.metrics["tuned"]) == {"bleu4", "rouge1", "rouge2", "rougeL", "exact_match", "ppl"}


def test_early_stopping_patience_adds_the_callback() -> None:
    from transformers import EarlyStoppingCallback

    from tuneforge.training.runner import _early_stopping

    assert _early_stopping(_cfg(), True) == []
    [callback] = _early_stopping(_cfg(training={"early_stopping_patience": 2}), True)
    assert isinstance(callback, EarlyStoppingCallback) and callback.early_stopping_patience == 2
    assert _early_stopping(_cfg(training={"early_stopping_patience": 2}), False) == []  # nothing to watch


def test_search_sampler_pruning_and_start_with_shape_the_study(tmp_path: Path) -> None:
    import optuna

    from tuneforge.config.schema import SearchConfig
    from tuneforge.training.search import _study

    space = {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tpe = _study(tmp_path / "a", SearchConfig.model_validate({"space": space}))
    rnd = _study(tmp_path / "b", SearchConfig.model_validate({"space": space, "sampler": "random", "pruning": False,
                                                              "start_with": [{"training.learning_rate": 1e-4}]}))
    assert isinstance(tpe.sampler, optuna.samplers.TPESampler) and isinstance(rnd.sampler, optuna.samplers.RandomSampler)
    assert isinstance(tpe.pruner, optuna.pruners.MedianPruner) and isinstance(rnd.pruner, optuna.pruners.NopPruner)
    assert len(rnd.trials) == 1 and not tpe.trials


def test_lora_rank_alpha_and_dropout_reach_peft(tokenizer: Any) -> None:
    from tuneforge.models.tiny import tiny_model
    from tuneforge.models.tuning import TUNING

    cfg = _cfg(method={"lora": {"rank": 4, "alpha": 32, "dropout": 0.2}})
    peft_cfg = TUNING.get("lora").peft_config(tiny_model(tokenizer), cfg)
    assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout) == (4, 32, 0.2)


@pytest.mark.parametrize("stage", ["dpo", "simpo", "orpo", "kto", "rm", "grpo", "ppo"])
def test_loraplus_reaches_every_alignment_trainer(stage: str) -> None:
    from tuneforge.training.stages.ppo import PPOTrainer
    from tuneforge.training.trainer import RunTrainerMixin

    cfg = _cfg(training={"stage": stage}, method={"lora": {"loraplus_lr_ratio": 16}})
    s = StageInputs(cfg, None, None, {}, {}, None, [], False, True)
    st = STAGES.get(stage)
    assert st.trainer_kwargs(s)["loraplus_lr_ratio"] == 16
    full = StageInputs(_cfg(training={"stage": stage}, method={"name": "full"}), None, None, {}, {}, None, [], False,
                       False)
    assert st.trainer_kwargs(full)["loraplus_lr_ratio"] is None  # LoRA+ needs LoRA matrices
    mro = (PPOTrainer if stage == "ppo" else st.trainer_class).__mro__  # PPO builds its trainer itself
    assert RunTrainerMixin in mro and mro.index(RunTrainerMixin) < next(
        i for i, c in enumerate(mro) if c.__module__.startswith(("trl.", "transformers.")))


def test_data_seed_changes_the_split(tmp_path: Path) -> None:
    from tuneforge.data.loader import split_examples

    path = _alpaca(tmp_path / "d.jsonl", 40, "q")
    cfg1, cfg2 = DataConfig(datasets=[str(path)], seed=1), DataConfig(datasets=[str(path)], seed=2)
    examples = load_data(cfg1).examples
    test1 = [ex.messages[0].content for ex in split_examples(examples, cfg1)[2]]
    test2 = [ex.messages[0].content for ex in split_examples(examples, cfg2)[2]]
    assert test1 != test2 and test1 == [ex.messages[0].content for ex in split_examples(examples, cfg1)[2]]
