"""Reward model: a sequence-level scorer trained on preference pairs (TRL ``RewardTrainer``).

The model is the base with a one-output classification head (``AutoModelForSequenceClassification``,
``num_labels=1``) that scores the last real token of prompt + answer. LoRA trains the adapters and the
new head (PEFT's ``SEQ_CLS`` task keeps ``score`` trainable). Validation logs pairwise accuracy.
"""

from __future__ import annotations

from typing import Any

from trl import RewardConfig, RewardTrainer

from tuneforge.config.schema import RunConfig
from tuneforge.training.stages.base import StageInputs, TrlStage
from tuneforge.training.trainer import RunTrainerMixin


class TuneforgeRewardTrainer(RunTrainerMixin, RewardTrainer):
    """TRL's reward trainer with tuneforge checkpoints and token counts."""


def full_sequences(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Pairs (prompt_ids, chosen_ids, rejected_ids) -> whole sequences (chosen_ids, rejected_ids) to score."""
    return {side: [p + a for p, a in zip(columns["prompt_ids"], columns[side], strict=True)]
            for side in ("chosen_ids", "rejected_ids")}


class RewardStage(TrlStage):
    """``rm``: learn r(prompt, answer) so that r(chosen) > r(rejected)."""

    name = "rm"
    policy = False
    generates_in_memory = False
    metrics = ("accuracy", "margin", "mean_reward")
    config_class = RewardConfig
    trainer_class = TuneforgeRewardTrainer

    def load_model(self, base: str, cfg: RunConfig, kwargs: dict[str, Any]) -> Any:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=1, trust_remote_code=cfg.model.trust_remote_code, **kwargs)
        tok = AutoTokenizer.from_pretrained(base)
        model.config.pad_token_id = tok.convert_tokens_to_ids(score_pad_token(tok))  # see score_pad_token
        if "quantization_config" in kwargs:  # the new head is not quantized; keep it in the hidden states' dtype
            model.score.to(model.get_input_embeddings().weight.dtype)
        return model

    def dataset(self, columns: dict[str, list[Any]], s: StageInputs) -> Any:
        from datasets import Dataset

        return Dataset.from_dict(full_sequences(columns))

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        return {"disable_dropout": True}

    def build(self, s: StageInputs) -> Any:
        s.tokenizer.pad_token = score_pad_token(s.tokenizer)  # saved with the model: scoring pads the same way
        return super().build(s)


#: Padding tokens tried, in order, when the tokenizer pads with its end-of-sequence token.
PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "[PAD]", "<unk>")


def score_pad_token(tokenizer: Any) -> str:
    """A padding token that never ends a real answer.

    The classification head scores the last token that is not padding. Chat models often pad with their
    end-of-turn token (SmolLM2: ``<|im_end|>``), which ends every answer: the head would then skip it.
    """
    pad = tokenizer.pad_token or tokenizer.eos_token
    if pad != tokenizer.eos_token:
        return pad
    vocab = tokenizer.get_vocab()
    return next((t for t in PAD_CANDIDATES if t in vocab and t != tokenizer.eos_token), pad)
