"""GRPO (TRL ``GRPOTrainer``): sample a group of answers per prompt, reward them, push towards the better ones.

``training.batch_size`` counts prompts; each step samples ``alignment.num_generations`` answers for each,
so the trainer's batch is ``batch_size x num_generations`` completions. Prompts are rendered and tokenized
by tuneforge with the training template; rewards come from ``training/rewards.py``.
"""

from __future__ import annotations

from typing import Any

from trl import GRPOConfig, GRPOTrainer

from tuneforge.config.schema import RunConfig
from tuneforge.training.rewards import build_rewards
from tuneforge.training.stages.base import StageInputs, TrlStage
from tuneforge.training.stages.reference import ReferenceMixin
from tuneforge.training.trainer import RunTrainerMixin


class TuneforgeGRPOTrainer(RunTrainerMixin, ReferenceMixin, GRPOTrainer):
    """TRL's GRPO with tuneforge checkpoints, the training template's prompt tokens and the disabled-adapter reference."""

    _encoder: Any = None

    def _tokenize_prompts(self, prompts: list[Any]) -> Any:
        if prompts and isinstance(prompts[0], str):  # rendered by tuneforge: special tokens are in the text
            from tuneforge.data.tokenize import PieceEncoder

            if self._encoder is None:  # one encoder for the run: it caches the pieces it has seen
                self._encoder = PieceEncoder(self.processing_class)
            return self._encoder(prompts), None, {}
        return super()._tokenize_prompts(prompts)


def prompt_columns(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The columns GRPO reads: the rendered prompt and the reference answer (passed to reward functions)."""
    return {"prompt": columns["prompt"], "answer": columns["answer"]}


class GrpoStage(TrlStage):
    """``grpo``: group-relative policy optimisation with reward functions."""

    name = "grpo"
    metrics = ("reward", "reward_std", "kl")
    surrogate_loss = True
    config_class = GRPOConfig
    trainer_class = TuneforgeGRPOTrainer
    truncates = False

    def prepare_data(self, cfg: RunConfig, examples: list[Any], opts: Any) -> Any:
        from tuneforge.data.processors.prompts import process_prompts

        return process_prompts(examples, opts)

    def dataset(self, columns: dict[str, list[Any]], s: StageInputs) -> Any:
        from datasets import Dataset

        return Dataset.from_dict(prompt_columns(columns))

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        a, t = s.cfg.alignment, s.cfg.training
        n = a.num_generations
        return {"num_generations": n, "max_completion_length": a.max_new_tokens, "temperature": a.temperature,
                "beta": a.kl_coef, "epsilon": a.clip_range, "reward_weights": a.reward_weights,
                "per_device_train_batch_size": (t.batch_size or 1) * n,
                "per_device_eval_batch_size": (t.batch_size or 1) * n,
                "generation_kwargs": {"use_cache": True}, "log_completions": False}

    def trainer_kwargs(self, s: StageInputs) -> dict[str, Any]:
        return {**super().trainer_kwargs(s), "reward_funcs": build_rewards(s.cfg)}
