"""adalora, ia3 and ln_tuning: PEFT's own implementations, configured from the run config.

Each is saved as a PEFT adapter and merges into the base on export (PEFT implements the merge for
all three); ``export`` checks the merged model against base + adapter as for LoRA.
"""

from __future__ import annotations

from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.models.tuning.methods import Lora, TuningMethod, _targets, _task_type
from tuneforge.utils.errors import ConfigError, Problem


class PeftMethod(TuningMethod):
    """A method that is one PEFT config: ``get_peft_model`` with :meth:`peft_config`."""

    adapter = True

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        from peft import get_peft_model

        try:
            return get_peft_model(model, self.peft_config(model, cfg))
        except ValueError as err:  # peft: no default targets for this architecture, or none matched
            section = f"method.{cfg.method.name}"
            leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not list(m.children())})
            raise ConfigError(f"{cfg.method.name} cannot be applied to {type(model).__name__}", [Problem(
                str(err), field=f"{section}.targets",
                fix=f"name modules of this model in {section}.targets; its layers are: {', '.join(leaves)}")]) from None

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        """The PEFT config of this run."""
        raise NotImplementedError


class AdaLora(Lora):
    """AdaLoRA: LoRA in SVD form whose rank budget is reallocated by importance during training.

    The final average rank is ``method.lora.rank``; every layer starts at ``adalora.init_rank``. The
    schedule is set from the run's real number of steps when training starts (:class:`AdaLoraBudget`),
    and the orthogonality penalty, which PEFT adds only to a loss the model computes itself, is added
    by the trainer through :meth:`regularizer`.
    """

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        from peft import AdaLoraConfig

        lora, ada = cfg.method.lora, cfg.method.adalora
        # total_step is provisional (PEFT requires one at creation); AdaLoraBudget sets the real schedule
        return AdaLoraConfig(init_r=adalora_init_rank(cfg), target_r=lora.rank, lora_alpha=lora.alpha or 2 * lora.rank,
                             lora_dropout=lora.dropout or 0.0, target_modules=_targets(model, lora.targets),
                             orth_reg_weight=ada.orth_reg_weight, total_step=1000, tinit=0, tfinal=0,
                             task_type=_task_type(model))

    def callbacks(self, model: Any, cfg: RunConfig) -> list[Any]:
        from tuneforge.models.tuning.schedules import AdaLoraBudget

        return [AdaLoraBudget(model, cfg.method.adalora)]

    def regularizer(self, model: Any) -> Any:
        """PEFT's penalty: weight x mean over factors of ||P P^T - I||_F (A rows, B columns orthonormal)."""
        import torch

        config = next(iter(model.peft_config.values()))
        terms = []
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_A" in name or "lora_B" in name):
                cov = p @ p.T if "lora_A" in name else p.T @ p
                terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=p.device, dtype=p.dtype)))
        return config.orth_reg_weight * torch.stack(terms).mean() if terms else None


def adalora_init_rank(cfg: RunConfig) -> int:
    """``adalora.init_rank``, else 1.5 x the target rank (the AdaLoRA paper starts at 1.5x the budget)."""
    return cfg.method.adalora.init_rank or max(cfg.method.lora.rank + 1, round(1.5 * cfg.method.lora.rank))


class Ia3(PeftMethod):
    """IA3: learned vectors rescale the keys, values and the feed-forward input (initialised to 1)."""

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        from peft import IA3Config

        s = cfg.method.ia3
        return IA3Config(target_modules=s.targets, feedforward_modules=s.feedforward, task_type=_task_type(model))


class LnTuning(PeftMethod):
    """LN tuning: trainable copies of the normalisation layers; everything else frozen."""

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        from peft import LNTuningConfig

        return LNTuningConfig(target_modules=cfg.method.ln_tuning.targets, task_type=_task_type(model))
