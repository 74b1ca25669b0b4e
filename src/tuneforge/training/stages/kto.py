"""KTO (TRL ``KTOTrainer``): answers labelled desirable or undesirable, no pairs needed.

Pairwise data is accepted too: each pair gives a desirable (chosen) and an undesirable (rejected) answer.
When the two labels are unbalanced and no weights are set, the minority label is up-weighted so that
weight x count is equal on both sides (the KTO paper's recommended range starts there).
"""

from __future__ import annotations

from typing import Any

from trl import KTOConfig, KTOTrainer

from tuneforge.config.schema import RunConfig
from tuneforge.training.stages.base import StageInputs, TrlStage
from tuneforge.training.stages.preference import TokenizedPairsMixin
from tuneforge.training.stages.reference import ReferenceMixin
from tuneforge.training.trainer import RunTrainerMixin


class TuneforgeKTOTrainer(RunTrainerMixin, ReferenceMixin, TokenizedPairsMixin, KTOTrainer):
    """TRL's KTO with tuneforge checkpoints, tokenization and the adapter-disabled reference."""

    def _tokenized(self, dataset: Any, args: Any, dataset_name: str) -> Any:
        if not self.calculate_KL:
            return dataset

        def mismatched(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            # The KL term uses each prompt with another example's completion from the same batch (as TRL does).
            batch["KL_completion_ids"] = [batch["completion_ids"][-1], *batch["completion_ids"][:-1]]
            return batch

        return dataset.map(mismatched, batched=True, batch_size=args.per_device_train_batch_size)


def unpaired(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Unpaired columns; pairwise columns are split into a desirable and an undesirable answer each."""
    if "completion_ids" in columns:
        return columns
    n = len(columns["prompt_ids"])
    return {"prompt_ids": columns["prompt_ids"] * 2, "completion_ids": columns["chosen_ids"] + columns["rejected_ids"],
            "label": [True] * n + [False] * n}


def balanced_weights(labels: list[bool]) -> tuple[float, float]:
    """(desirable, undesirable) weights making weight x count equal, the larger side kept at 1."""
    good = max(1, sum(labels))
    bad = max(1, len(labels) - sum(labels))
    return (bad / good, 1.0) if good < bad else (1.0, good / bad)


class KtoStage(TrlStage):
    """``kto``: Kahneman-Tversky optimisation on desirable/undesirable answers."""

    name = "kto"
    metrics = ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl")
    config_class = KTOConfig
    trainer_class = TuneforgeKTOTrainer

    def train_rows(self, train: Any) -> int:
        """A pair trains as two rows, one desirable and one undesirable answer."""
        return len(unpaired(train.columns)["label"])

    def defaults(self, cfg: RunConfig, train: dict[str, list[Any]]) -> tuple[RunConfig, list[str]]:
        a = cfg.alignment
        if a.desirable_weight is not None or a.undesirable_weight is not None:
            return cfg, []
        labels = unpaired(train)["label"]
        good, bad = balanced_weights(labels)
        cfg = cfg.model_copy(deep=True)
        cfg.alignment.desirable_weight, cfg.alignment.undesirable_weight = round(good, 3), round(bad, 3)
        n_good = sum(labels)
        return cfg, [f"alignment.desirable_weight = {good:.3g}, undesirable_weight = {bad:.3g}: "
                     f"{n_good} desirable vs {len(labels) - n_good} undesirable answers (weight x count balanced)"]

    def dataset(self, columns: dict[str, list[Any]], s: StageInputs) -> Any:
        from datasets import Dataset

        # KTO's KL term pairs each prompt with a neighbour's answer in a fixed-order batch, so the trainer
        # reads sequentially: shuffle once here, seeded (a resumed run sees the same order).
        return Dataset.from_dict(unpaired(columns)).shuffle(seed=s.cfg.training.seed).flatten_indices()

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        a = s.cfg.alignment
        return {"train_sampling_strategy": "sequential", "beta": a.beta or 0.1, "desirable_weight": a.desirable_weight or 1.0,
                "undesirable_weight": a.undesirable_weight or 1.0, "precompute_ref_log_probs": a.precompute_ref}
