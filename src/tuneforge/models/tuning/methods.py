"""full, freeze, bitfit, lora, dora and qlora: each says how the model is loaded and what trains.

The other PEFT methods (adalora, ia3, ln_tuning, prompt, ptuning, prefix, adapter) are in ``peft_methods.py``.

LoRA-family methods are built on PEFT (``LoraConfig`` + ``get_peft_model``); QLoRA loads the base
with bitsandbytes (4-bit NF4 with double quantisation, or 8-bit), which also runs on CPU since
bitsandbytes 0.49.
"""

from __future__ import annotations

import re
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.utils.errors import ConfigError, Problem

#: Names of a classification head's layer (BERT-style, decoders): trained whole, never adapted.
CLASSIFIER_HEADS = ("classifier", "score")
#: Module-name endings treated as attention projections for ``targets: attention``.
ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "c_attn", "Wqkv",
                   "self.query", "self.key", "self.value")  # the last three: BERT-style encoders


class TuningMethod:
    """Base: everything trains (full fine-tuning)."""

    #: Whether the result is an adapter (saved and exported separately from the base).
    adapter = False

    def quantization_config(self, cfg: RunConfig, dtype: Any) -> Any:
        """A transformers quantization config for loading the base, or None."""
        return None

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        """Return the model with exactly the parameters this method trains marked ``requires_grad``."""
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def callbacks(self, model: Any, cfg: RunConfig) -> list[Any]:
        """``TrainerCallback`` objects the method needs during training (a schedule); none by default."""
        return []

    def regularizer(self, model: Any) -> Any:
        """An extra loss term added once per optimizer step (a tensor), or None."""
        return None

    def logit_offset(self, cfg: RunConfig) -> int:
        """Positions the model's output has before the input's own (virtual tokens prepended); 0 by default."""
        return 0


class Freeze(TuningMethod):
    """Train the last N transformer layers (and modules matching ``freeze.modules``); freeze the rest.

    With ``freeze.unfreeze_at`` (progressive unfreezing), N more layers below start to train at each of
    those fractions of the run. Every layer that will train is given to the optimizer from the start
    (the optimizer is built once), and :class:`ProgressiveUnfreeze` holds the later ones frozen until
    their step, so their gradients are None and AdamW leaves them untouched until then.
    """

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        layers = _decoder_layers(model)
        f = cfg.method.freeze
        n = f.trainable_layers * (1 + len(f.unfreeze_at))
        if n > len(layers):
            field = "method.freeze.unfreeze_at" if f.unfreeze_at else "method.freeze.trainable_layers"
            raise ConfigError("too many trainable layers", [Problem(
                f"method.freeze.trainable_layers {f.trainable_layers} x {1 + len(f.unfreeze_at)} phases needs {n} "
                f"layers but the model has {len(layers)}", field=field,
                fix=f"train at most {len(layers)} layers in all")])
        keep = {id(p) for layer in layers[len(layers) - n:] for p in layer.parameters()}
        patterns = [re.compile(p) for p in f.modules]
        for name, p in model.named_parameters():
            p.requires_grad_(id(p) in keep or any(pat.search(name) for pat in patterns))
        return model

    def callbacks(self, model: Any, cfg: RunConfig) -> list[Any]:
        f = cfg.method.freeze
        if not f.unfreeze_at:
            return []
        from tuneforge.models.tuning.schedules import ProgressiveUnfreeze

        layers = _decoder_layers(model)
        top = len(layers) - f.trainable_layers
        phases = [[p for layer in layers[top - (k + 1) * f.trainable_layers: top - k * f.trainable_layers]
                   for p in layer.parameters()] for k in range(len(f.unfreeze_at))]
        return [ProgressiveUnfreeze(list(zip(f.unfreeze_at, phases, strict=True)))]


class BitFit(TuningMethod):
    """Train only the bias terms (BitFit); the rest of the model stays frozen."""

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        biases = 0
        for name, p in model.named_parameters():
            is_bias = name.endswith(".bias")
            p.requires_grad_(is_bias)
            biases += p.numel() if is_bias else 0
        if not biases:
            arch = getattr(model.config, "model_type", "?")
            raise ConfigError("the model has no bias terms to train", [Problem(
                f"method bitfit trains biases, and {type(model).__name__} (model_type {arch!r}) has none",
                field="method.name", fix="use a model with biases (qwen2's q/k/v projections, BERT, GPT-2), "
                                         "or method ln_tuning or ia3, which train a similar few parameters")])
        return model


class Lora(TuningMethod):
    """LoRA adapters (DoRA, rsLoRA, PiSSA/OLoRA init and LoRA+ are options)."""

    adapter = True
    dora = False

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        return apply_peft(model, self.peft_config(model, cfg), cfg.method.name, "method.lora.targets")

    def peft_config(self, model: Any, cfg: RunConfig) -> Any:
        """The PEFT ``LoraConfig`` for this run."""
        from peft import LoraConfig

        lora = cfg.method.lora
        init: bool | str = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}[lora.init]
        return LoraConfig(r=lora.rank, lora_alpha=lora.alpha or 2 * lora.rank, lora_dropout=lora.dropout or 0.0,
                          target_modules=_targets(model, lora.targets), use_dora=lora.use_dora or self.dora,
                          use_rslora=lora.use_rslora, init_lora_weights=init, task_type=_task_type(model))


class Dora(Lora):
    """LoRA with weight decomposition (magnitude + direction)."""

    dora = True


class QLora(Lora):
    """LoRA on a bitsandbytes-quantised base (4-bit NF4 + double quantisation, or 8-bit)."""

    def quantization_config(self, cfg: RunConfig, dtype: Any) -> Any:
        from transformers import BitsAndBytesConfig

        if cfg.method.quant_bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)

    def apply(self, model: Any, cfg: RunConfig) -> Any:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
        return super().apply(model, cfg)


def apply_peft(model: Any, config: Any, name: str, field: str) -> Any:
    """``get_peft_model``, with PEFT's refusals as a ConfigError that names the model's layers.

    PEFT raises ValueError when it has no default targets for an architecture, when none of the targets
    match, or when a target is a layer the method cannot adapt (DoRA on the fused expert weights of a
    mixture-of-experts model).
    """
    from peft import get_peft_model

    try:
        return get_peft_model(model, config)
    except ValueError as err:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not list(m.children())})
        raise ConfigError(f"{name} cannot be applied to {type(model).__name__}", [Problem(
            str(err), field=field, fix=f"choose other modules in {field} (its layers are: {', '.join(leaves)}), or "
                                       "another method")]) from None


def _decoder_layers(model: Any) -> Any:
    """The list of transformer blocks (``model.model.layers`` for Llama-like models)."""
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "bert.encoder.layer",
                 "roberta.encoder.layer", "encoder.layer"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            return obj
    raise ConfigError("cannot find the transformer layers", [Problem(
        f"{type(model).__name__} has none of model.layers / transformer.h", field="method.name",
        fix="use method lora or full, or name modules in method.freeze.modules")])


def _targets(model: Any, targets: str | list[str]) -> str | list[str]:
    if targets == "all-linear" and _task_type(model) != "CAUSAL_LM":
        # PEFT's all-linear leaves out a causal LM's output layer but not a token classifier's head, which
        # the classification task then cannot also train whole: every linear layer but the head, by name
        import torch

        return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] not in CLASSIFIER_HEADS})
    if targets == "all-linear":
        return "all-linear"
    if targets == "attention":
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n.endswith(ATTENTION_NAMES)})
        if not names:
            raise ConfigError("no attention projections found", [Problem(
                "targets 'attention' matched no module", field="method.lora.targets",
                fix="list module names, e.g. [q_proj, v_proj], or use all-linear")])
        return names
    return [targets] if isinstance(targets, str) else list(targets)


def trainable_summary(model: Any) -> dict[str, int]:
    """Trainable and total parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total}


#: PEFT task by the head's class-name suffix: the classification tasks keep the new head trainable and saved.
TASK_TYPES = {"ForSequenceClassification": "SEQ_CLS", "ForTokenClassification": "TOKEN_CLS"}


def _task_type(model: Any) -> str:
    """PEFT task: SEQ_CLS (reward models, seq_cls), TOKEN_CLS (token_cls), else CAUSAL_LM."""
    name = type(model).__name__
    return next((task for suffix, task in TASK_TYPES.items() if name.endswith(suffix)), "CAUSAL_LM")
