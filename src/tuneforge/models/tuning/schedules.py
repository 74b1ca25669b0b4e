"""Training-time schedules of tuning methods, as ``TrainerCallback`` objects.

Each is a function of the global step alone, so a resumed run is in the same state as an
uninterrupted one at the same step.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class ProgressiveUnfreeze(TrainerCallback):
    """Hold groups of parameters frozen until their fraction of the run (``freeze.unfreeze_at``).

    Args:
        phases: (fraction of max_steps, parameters that start to train there), fractions rising.
    """

    def __init__(self, phases: list[tuple[float, list[Any]]]) -> None:
        self.phases = phases

    def _apply(self, step: int, max_steps: int) -> None:
        for fraction, params in self.phases:
            on = step >= round(fraction * max_steps)
            for p in params:
                p.requires_grad_(on)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The optimizer exists now (it was built over every phase): freeze the later phases."""
        self._apply(state.global_step, state.max_steps)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Unfreeze each phase whose step has come."""
        self._apply(state.global_step, state.max_steps)


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA's rank budget over the real run: schedule from ``max_steps``, reallocation after each step.

    peft's ``update_and_allocate`` reads the gradients, so it runs after ``optimizer.step`` and before
    they are zeroed (``on_optimizer_step``), with the step count before the increment, as peft's own
    loop does.

    Args:
        model: The peft model (AdaLoraModel inside).
        settings: ``method.adalora``.
    """

    def __init__(self, model: Any, settings: Any) -> None:
        self.model = model
        self.settings = settings

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Fix tinit, tfinal and deltaT from the run's real number of optimizer steps."""
        config = next(iter(self.model.peft_config.values()))
        schedule = adalora_schedule(state.max_steps, self.settings)
        for key, value in schedule.items():
            setattr(config, key, value)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Reallocate the rank budget from this step's gradients."""
        self.model.base_model.update_and_allocate(state.global_step)


def adalora_schedule(total: int, settings: Any) -> dict[str, int]:
    """AdaLoRA's total_step, tinit, tfinal and deltaT for a run of ``total`` optimizer steps.

    The budgeting phase lies between ``warmup_share`` and ``1 - final_share`` of the run; deltaT gives
    about 50 reallocations in it (at least one step apart) unless ``interval`` is set.
    """
    tinit = round(settings.warmup_share * total)
    tfinal = round(settings.final_share * total)
    if total - tfinal - tinit < 1:  # a very short run: keep one budgeting step
        tinit, tfinal = max(0, total - 2), min(1, total - 1)
    budget = max(1, total - tfinal - tinit)
    return {"total_step": max(2, total), "tinit": tinit, "tfinal": tfinal,
            "deltaT": settings.interval or max(1, budget // 50)}
