"""The frozen reference of DPO, KTO and GRPO, without a second copy of the weights when tuning adapters.

TRL's trainers, given a model that is already a PEFT model, add a second adapter named ``ref`` (a copy of
the initial adapter) and run the reference through it. For adapters that start as a no-op (LoRA/DoRA with
B = 0: the ``default`` and ``gaussian`` inits) the base with adapters disabled *is* that reference, so we
drop the copy: the reference forward then skips the adapter matmuls. PiSSA/OLoRA move weight into the
initial adapter, so there the copy is the only correct reference and is kept.
"""

from __future__ import annotations

from typing import Any

#: LoRA initialisations whose initial adapter changes nothing (B = 0).
NO_OP_INITS = ("default", "gaussian")


def drop_reference_copy(trainer: Any, lora_init: str) -> bool:
    """Delete TRL's ``ref`` adapter copy when the disabled adapter is the same reference; True if deleted."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel) or "ref" not in model.peft_config or lora_init not in NO_OP_INITS:
        return False
    model.delete_adapter("ref")
    model.set_adapter("default")
    return True


class ReferenceMixin:
    """Trainer mixin: after TRL's constructor, use the disabled adapter as the reference (see module doc)."""

    def __init__(self, *args: Any, lora_init: str = "default", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reference_is_base = drop_reference_copy(self, lora_init)
