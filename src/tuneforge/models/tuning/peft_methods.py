"""adalora, ia3, ln_tuning, prompt, ptuning, prefix and adapter: PEFT methods configured from the run config.

Each is saved as a PEFT adapter. adalora, ia3 and ln_tuning merge into the base on export (PEFT implements
the merge), checked against base + adapter as for LoRA. The prompt-learning methods (prompt, ptuning,
prefix) and the bottleneck adapters cannot be merged; ``export`` saves their adapter with the reason
(``MethodSpec.merge_blocker``). The bottleneck adapter is tuneforge's own PEFT method (``bottleneck.py``).
"""

from __future__ import annotations

from typing import Any

from tuneforge.config.schema import PromptLearningSettings, RunConfig
from tuneforge.models.tuning.methods import Lora, TuningMethod, _targets, _task_type, apply_peft


class PeftMethod(TuningMethod):
    """A method that is one PEFT config: ``get_peft_model`` with :meth:`peft_config`."""

    adapter = True

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        return apply_peft(model, self.peft_config(model, cfg), cfg.method.name, self.field(cfg))

    def field(self, cfg: RunConfig) -> str:
        """The config field a refusal of PEFT points at."""
        return f"method.{cfg.method.name}.targets"

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
        targets, feedforward = s.targets, s.feedforward
        if targets is None:
            targets, guessed = ia3_default_targets(model.config.model_type, _leaf_names(model, "Linear"))
            feedforward = guessed if feedforward is None else feedforward
        return IA3Config(target_modules=targets, feedforward_modules=feedforward, task_type=_task_type(model))


class LnTuning(PeftMethod):
    """LN tuning: trainable copies of the normalisation layers; everything else frozen."""

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        from peft import LNTuningConfig

        targets = cfg.method.ln_tuning.targets or ln_default_targets(model.config.model_type,
                                                                     _leaf_names(model, "Norm"))
        return LNTuningConfig(target_modules=targets, task_type=_task_type(model))


#: Names IA3 rescales where PEFT has no list for the architecture: keys and values (or the fused
#: projection) and the first feed-forward output layer found.
_IA3_ATTENTION = (("k_proj", "v_proj"), ("qkv_proj",), ("query_key_value",), ("c_attn",), ("Wqkv",))
_IA3_FEEDFORWARD = ("down_proj", "w2", "fc2", "dense_4h_to_h", "c_proj")


def ia3_default_targets(model_type: str, linear_names: set[str]) -> tuple[list[str] | None, list[str] | None]:
    """(targets, feed-forward targets) for IA3: PEFT's list for ``model_type``, else found by layer name
    (phi3's fused qkv_proj, mixture-of-experts models); (None, None) lets PEFT refuse with its message."""
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS

    if model_type in TARGETS:
        return list(TARGETS[model_type]), list(FEEDFORWARD.get(model_type, []))
    attention = next((list(g) for g in _IA3_ATTENTION if set(g) <= linear_names), [])
    feedforward = next(([n] for n in _IA3_FEEDFORWARD if n in linear_names), [])
    return (attention + feedforward, feedforward) if attention or feedforward else (None, None)


def ln_default_targets(model_type: str, norm_names: set[str]) -> list[str] | None:
    """Norm layers for LN tuning: PEFT's list for ``model_type``, else every normalisation layer by name."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING as TARGETS

    return list(TARGETS[model_type]) if model_type in TARGETS else (sorted(norm_names) or None)


def _leaf_names(model: Any, kind: str) -> set[str]:
    """Last name parts of the modules whose class name contains ``kind`` (Linear, Norm)."""
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and kind in type(m).__name__}


class PromptLearning(PeftMethod):
    """Virtual tokens trained in front of every input; the whole model stays frozen.

    prompt and ptuning prepend ``virtual_tokens`` embeddings to the input, so the model returns that many
    more logits, first; prefix tuning gives every layer extra keys and values instead, and the logits
    keep the input's length (:meth:`logit_offset`).
    """

    prepends = True

    def field(self, cfg: RunConfig) -> str:
        return "method.prompt_learning"

    def logit_offset(self, cfg: RunConfig) -> int:
        return cfg.method.prompt_learning.virtual_tokens if self.prepends else 0

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        return self.prompt_config(model, cfg.method.prompt_learning, _task_type(model))

    def prompt_config(self, model: Any, s: PromptLearningSettings, task: str) -> Any:
        """The PEFT config of the method from ``method.prompt_learning``."""
        raise NotImplementedError


class PromptTuning(PromptLearning):
    """Prompt tuning (Lester et al. 2021): the virtual tokens' embeddings are the only trained weights."""

    def prompt_config(self, model: Any, s: PromptLearningSettings, task: str) -> Any:
        from peft import PromptTuningConfig

        text = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": s.init_text,
                "tokenizer_name_or_path": model.name_or_path} if s.init_text else {"prompt_tuning_init": "RANDOM"}
        return PromptTuningConfig(num_virtual_tokens=s.virtual_tokens, task_type=task, **text)


class PTuning(PromptLearning):
    """P-tuning (Liu et al. 2021): a prompt encoder (MLP or LSTM) produces the virtual tokens."""

    def prompt_config(self, model: Any, s: PromptLearningSettings, task: str) -> Any:
        from peft import PromptEncoderConfig

        return PromptEncoderConfig(num_virtual_tokens=s.virtual_tokens, encoder_reparameterization_type=s.encoder.upper(),
                                   encoder_hidden_size=s.encoder_hidden_size or model.config.hidden_size, task_type=task)


class PrefixTuning(PromptLearning):
    """Prefix tuning (Li & Liang 2021): trained keys and values in front of every attention layer.

    peft starts the prefix at random, which puts random keys and values in front of every layer: the model
    is far worse than its base at step 0, and training first has to undo that (measured: validation loss
    4.9 after 15 steps on the default model, against 1.7 for the base). As Li & Liang recommend, the
    prefix starts instead from the keys and values the base model computes for ``init_text``, so the
    model starts as its base reading that text first.
    """

    prepends = False

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        model = super().apply(model, cfg)
        s = cfg.method.prompt_learning
        if s.init_text and not s.prefix_projection:  # with the projection the keys and values come from its MLP
            _prefix_from_text(model, s.init_text, s.virtual_tokens)
        return model

    def prompt_config(self, model: Any, s: PromptLearningSettings, task: str) -> Any:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(num_virtual_tokens=s.virtual_tokens, prefix_projection=s.prefix_projection,
                                  encoder_hidden_size=s.encoder_hidden_size or model.config.hidden_size, task_type=task)


def _prefix_from_text(model: Any, text: str, n: int) -> None:
    """Set the prefix to the base model's keys and values of ``text`` (its tokens repeated or cut to ``n``).

    peft reads the prefix embedding row v as (layers x 2, kv heads, head dim), keys then values per layer.
    """
    import torch

    from tuneforge.models.loading import load_tokenizer

    base = model.get_base_model()
    ids = load_tokenizer(base.name_or_path)(text, add_special_tokens=False)["input_ids"]
    ids = (ids * (n // max(1, len(ids)) + 1))[:n]
    weight = model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        cache = base(input_ids=torch.tensor([ids], device=weight.device), use_cache=True).past_key_values
        rows = [torch.cat([layer.keys[0], layer.values[0]], dim=0) for layer in cache.layers]  # (2 x heads, n, d)
        prefix = torch.cat(rows, dim=0).permute(1, 0, 2).reshape(n, -1)  # (n, layers x 2 x heads x d)
        weight.copy_(prefix.to(weight.dtype))


class Bottleneck(PeftMethod):
    """Bottleneck adapters on the attention and MLP outputs (``bottleneck.py``)."""

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        from tuneforge.models.tuning.bottleneck import BottleneckConfig, register

        register()
        s = cfg.method.adapter
        return BottleneckConfig(target_modules=s.targets, size=adapter_size(cfg, model.config.hidden_size),
                                activation=s.activation, dropout=s.dropout, task_type=_task_type(model))


def adapter_size(cfg: RunConfig, hidden: int) -> int:
    """``adapter.size``, else hidden / 16 and at least 8 (Pfeiffer et al.'s reduction factor 16)."""
    return cfg.method.adapter.size or max(8, hidden // 16)
