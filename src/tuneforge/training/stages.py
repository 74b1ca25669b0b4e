"""Training stages: each adds only what differs from the shared path in runner.py."""

from __future__ import annotations

from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.data.collators import PaddingFreeCollator, padded_collator
from tuneforge.training.trainer import TuneforgeTrainer
from tuneforge.utils.names import Registry


class Stage:
    """Causal-LM training on input_ids/labels (sft); subclasses change data kind, collator or trainer."""

    name = "sft"
    trainer_class: type = TuneforgeTrainer

    def collator(self, cfg: RunConfig, tokenizer: Any, flash: bool) -> Any:
        """Padding-free by default; padded when asked (e.g. kernels that need rectangular batches)."""
        if cfg.training.padding_free:
            return PaddingFreeCollator(flash_attn_kwargs=flash)
        return padded_collator(tokenizer, pad_to_multiple_of=8 if flash else None)


class PretrainStage(Stage):
    """Continued pre-training: rows are chunks of concatenated documents, every token trained."""

    name = "pt"


STAGES: Registry[Stage] = Registry("training stage")
STAGES.register("sft", Stage())
STAGES.register("pt", PretrainStage())
