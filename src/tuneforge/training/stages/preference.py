"""DPO (TRL ``DPOTrainer``), SimPO (TRL ``CPOTrainer`` with the simpo loss) and ORPO (TRL ``ORPOTrainer``).

All three read pairs tokenized by tuneforge with the training template (``prompt_ids``, ``chosen_ids``,
``rejected_ids``; answers end with the template's end-of-turn), so the trainers' own tokenization is
skipped: chat then renders prompts exactly as training saw them.
"""

from __future__ import annotations

from typing import Any

from trl import DPOConfig, DPOTrainer
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from tuneforge.training.stages.base import StageInputs, TrlStage
from tuneforge.training.stages.reference import ReferenceMixin
from tuneforge.training.trainer import RunTrainerMixin

IGNORE = -100
PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


class TokenizedPairsMixin:
    """``_prepare_dataset`` that keeps tuneforge's tokenized pairs (DPO and KTO trainers)."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if "prompt_ids" in dataset.column_names:
            return self._tokenized(dataset, args, dataset_name)
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)  # type: ignore[misc]

    def _tokenized(self, dataset: Any, args: Any, dataset_name: str) -> Any:
        return dataset


class TuneforgeDPOTrainer(RunTrainerMixin, ReferenceMixin, TokenizedPairsMixin, DPOTrainer):
    """TRL's DPO with tuneforge checkpoints, tokenization and the adapter-disabled reference."""


def cpo_row(feature: dict[str, Any]) -> dict[str, Any]:
    """One pair in the layout of TRL's CPO/ORPO collator (prompt masked with -100 in the labels)."""
    prompt = list(feature["prompt_ids"])
    row: dict[str, Any] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        answer = list(feature[f"{side}_ids"])
        row[f"{side}_input_ids"] = prompt + answer
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(answer))
        row[f"{side}_labels"] = [IGNORE] * len(prompt) + answer
    return row


class TokenizedRowMixin:
    """``tokenize_row`` of the CPO/ORPO trainers for pairs tuneforge already tokenized."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
        if "prompt_ids" in feature:
            return cpo_row(feature)
        return super().tokenize_row(feature, model)  # type: ignore[misc]


class TuneforgeCPOTrainer(RunTrainerMixin, TokenizedRowMixin, CPOTrainer):
    """TRL's CPO trainer (SimPO loss) with tuneforge checkpoints and tokenization."""


class TuneforgeORPOTrainer(RunTrainerMixin, TokenizedRowMixin, ORPOTrainer):
    """TRL's ORPO trainer with tuneforge checkpoints and tokenization."""


class DpoStage(TrlStage):
    """Direct preference optimisation against a frozen reference (the base, adapters disabled, for LoRA)."""

    name = "dpo"
    metrics = PAIR_METRICS
    config_class = DPOConfig
    trainer_class = TuneforgeDPOTrainer

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        a = s.cfg.alignment
        losses, weights = [a.dpo_loss], None
        if a.sft_weight > 0:  # RPO-style: DPO plus an NLL term on the chosen answers
            losses, weights = [a.dpo_loss, "sft"], [1.0, a.sft_weight]
        return {"beta": a.beta or 0.1, "loss_type": losses, "loss_weights": weights,
                "precompute_ref_log_probs": a.precompute_ref}


class SimpoStage(TrlStage):
    """SimPO: reference-free, length-normalised log-probabilities with a target margin gamma."""

    name = "simpo"
    metrics = PAIR_METRICS
    config_class = CPOConfig
    trainer_class = TuneforgeCPOTrainer

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        a = s.cfg.alignment
        return {"loss_type": "simpo", "beta": a.beta or 2.0, "simpo_gamma": a.simpo_gamma, "cpo_alpha": a.sft_weight}


class OrpoStage(TrlStage):
    """ORPO: SFT loss on the chosen answer plus beta x the odds-ratio preference term; no reference."""

    name = "orpo"
    metrics = PAIR_METRICS
    config_class = ORPOConfig
    trainer_class = TuneforgeORPOTrainer

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        return {"beta": s.cfg.alignment.beta or 0.1}
