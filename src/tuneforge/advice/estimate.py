"""Resources of a run (docs/advice.md): parameters, memory by component, tokens, steps, time and hosted cost.

Memory model (per device, in GiB = 2^30 bytes):

- weights: parameters x bytes per parameter (fp32 4, bf16/fp16 2, int8 1, int4 0.5); the seed's example,
  6.7B in fp16, gives 12.5 GiB. QLoRA keeps the base in 4 or 8 bits.
- gradients: trainable parameters x bytes of the compute precision.
- optimizer: AdamW keeps two fp32 moments per trainable parameter (8 bytes), plus an fp32 master copy
  (4 bytes) when training in 16 bits (mixed precision).
- activations: per layer about ``34 x batch x length x hidden`` bytes in 16 bits (Korthikanti et al. 2022,
  with flash/SDPA attention, so no length^2 term), doubled in fp32; gradient checkpointing keeps only each
  layer's input (``2 x batch x length x hidden`` bytes) plus one layer's full activations. The logits of
  the labelled positions (``batch x length x vocab``, fp32, with their gradient) are added.
- ZeRO stage 1/2/3 shards optimizer / + gradients / + weights across devices; offload moves the optimizer
  states (and with stage 3 the weights) to CPU memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.catalog import method_spec

GIB = 2**30
BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
#: Hosted fine-tuning prices (docs/advice.md), CNY per 1,000 training tokens (override with --price).
PRICES: dict[str, float] = {"bailian-8b": 0.006, "bailian-32b": 0.04, "volcano": 0.03}
#: Billing minimum in tokens (one platform rounds smaller jobs up to 1,000 tokens).
MIN_BILLED_TOKENS = 1000
ACTIVATION_BYTES_PER_UNIT = 34  # bytes per (token x hidden) per layer in 16 bits


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model."""

    params: int
    hidden: int
    layers: int
    vocab: int
    linear_per_layer: dict[str, tuple[int, int]]  # module name -> (in, out) of one layer's linear layers
    model_type: str = ""  # the config's model_type (peft's default targets per architecture are keyed by it)
    norms_per_layer: dict[str, int] = field(default_factory=dict)  # norm module name -> parameters, one layer
    other_norms: dict[str, int] = field(default_factory=dict)  # norms outside the layers (the final norm)
    bias_params: int = 0  # every bias term of the model
    layer_params: int = 0  # every parameter of one transformer layer (0: unknown, count its linear weights)


def model_shape(name_or_path: str, trust_remote_code: bool = False) -> ModelShape:
    """Parameter count and dimensions, from the config alone (the model is built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    linear: dict[str, tuple[int, int]] = {}
    norms: dict[str, int] = {}
    other: dict[str, int] = {}
    for name, module in model.named_modules():
        leaf, first_layer = name.rsplit(".", 1)[-1], ".layers.0." in f"{name}."
        if isinstance(module, torch.nn.Linear) and first_layer:
            linear[leaf] = (module.in_features, module.out_features)
        elif "norm" in type(module).__name__.lower() and (first_layer or ".layers." not in f"{name}."):
            (norms if first_layer else other)[leaf] = sum(p.numel() for p in module.parameters(recurse=False))
    params = biases = layer = 0
    for n, p in model.named_parameters():
        params += p.numel()
        biases += p.numel() if n.endswith(".bias") else 0
        layer += p.numel() if ".layers.0." in n else 0
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(params, text.hidden_size, text.num_hidden_layers, text.vocab_size, linear,
                      getattr(config, "model_type", ""), norms, other, biases, layer)


def shape_from_numbers(params: float, hidden: int = 4096, layers: int = 32, vocab: int = 32000) -> ModelShape:
    """A shape from a parameter count (for what-if estimates such as the seed's 6.7B example)."""
    per_layer = {"q_proj": (hidden, hidden), "k_proj": (hidden, hidden), "v_proj": (hidden, hidden),
                 "o_proj": (hidden, hidden), "gate_proj": (hidden, 4 * hidden), "up_proj": (hidden, 4 * hidden),
                 "down_proj": (4 * hidden, hidden)}
    return ModelShape(int(params), hidden, layers, vocab, per_layer)


@dataclass(frozen=True)
class Setup:
    """The training choices that change memory."""

    method: str = "lora"  # a method.name of config/catalog.py
    precision: str = "bf16"  # compute precision: fp32 | bf16 | fp16
    batch: int = 4
    length: int = 1024
    gradient_checkpointing: bool = False
    lora_rank: int = 8
    lora_targets: str | list[str] = "all-linear"
    trainable_layers: int = 2  # freeze: layers per phase
    phases: int = 1  # freeze: 1 + the progressive unfreezing steps (every phase's layers are held for the optimizer)
    init_rank: int = 12  # adalora: the starting rank (the optimizer holds it from the start)
    targets: list[str] | None = None  # ia3 / ln_tuning modules; None: peft's defaults for the architecture
    feedforward: list[str] | None = None  # ia3: which targets are rescaled at their input
    virtual_tokens: int = 20  # prompt / ptuning / prefix
    encoder: str = "mlp"  # ptuning: mlp | lstm
    encoder_hidden: int | None = None  # ptuning and projected prefix: encoder width (None: the hidden size)
    prefix_projection: bool = False
    adapter_size: int | None = None  # adapter: bottleneck width (None: hidden / 16, at least 8)
    quant_bits: int = 4
    zero_stage: int = 0
    offload: bool = False
    devices: int = 1


def trainable_params(shape: ModelShape, s: Setup) -> int:
    """Trainable parameters of the method, by the rule of :data:`TRAINABLE` for its name."""
    return TRAINABLE[s.method](shape, s)


def _lora_params(shape: ModelShape, s: Setup, rank: int, extra: int = 0, magnitude: bool = False) -> int:
    """rank x (in + out + extra) per adapted linear layer, plus a magnitude vector (out) for DoRA."""
    return shape.layers * sum(rank * (i + o + extra) + (o if magnitude else 0)
                              for name, (i, o) in shape.linear_per_layer.items() if _targeted(name, s.lora_targets))


def _freeze_params(shape: ModelShape, s: Setup) -> int:
    per_layer = shape.layer_params or sum(i * o for i, o in shape.linear_per_layer.values())
    return min(shape.params, s.trainable_layers * s.phases * per_layer)


def _ia3_params(shape: ModelShape, s: Setup) -> int:
    """One vector per rescaled layer: its output size, or its input size for a feed-forward layer."""
    from tuneforge.models.tuning.peft_methods import ia3_default_targets

    targets, ff = s.targets, s.feedforward
    if targets is None:
        targets, guessed = ia3_default_targets(shape.model_type, set(shape.linear_per_layer))
        ff = guessed if ff is None else ff
    targets, ff = targets or [], ff or []
    return shape.layers * sum(i if name in ff else o for name, (i, o) in shape.linear_per_layer.items()
                              if name in targets)


def _ln_params(shape: ModelShape, s: Setup) -> int:
    from tuneforge.models.tuning.peft_methods import ln_default_targets

    targets = s.targets or ln_default_targets(shape.model_type, {*shape.norms_per_layer, *shape.other_norms}) or []
    return (shape.layers * sum(n for name, n in shape.norms_per_layer.items() if name in targets)
            + sum(n for name, n in shape.other_norms.items() if name in targets))


def _linear(i: int, o: int) -> int:
    return i * o + o


def _ptuning_params(shape: ModelShape, s: Setup) -> int:
    """The virtual tokens' embedding plus peft's prompt encoder: a 3-layer MLP, or a 2-layer bidirectional
    LSTM and a 2-layer MLP head (trained; only the virtual tokens it produces are saved)."""
    h, e = shape.hidden, s.encoder_hidden or shape.hidden
    if s.encoder == "lstm":
        lstm = sum(2 * 4 * (e * width + e * e + 2 * e) for width in (h, 2 * e))
        return s.virtual_tokens * h + lstm + _linear(2 * e, 2 * e) + _linear(2 * e, h)
    return s.virtual_tokens * h + _linear(h, e) + _linear(e, e) + _linear(e, h)


def _prefix_params(shape: ModelShape, s: Setup) -> int:
    """Keys and values for every layer (kv width: the k projection's output, smaller under grouped queries),
    trained directly or through peft's 2-layer projection MLP from a small embedding."""
    kv = shape.linear_per_layer.get("k_proj", (shape.hidden, shape.hidden))[1]
    per_token = shape.layers * 2 * kv
    if not s.prefix_projection:
        return s.virtual_tokens * per_token
    e = s.encoder_hidden or shape.hidden
    return s.virtual_tokens * kv + _linear(kv, e) + _linear(e, per_token)


def _adapter_params(shape: ModelShape, s: Setup) -> int:
    """Per adapted output projection (width o): down o -> size and up size -> o, with biases."""
    from tuneforge.models.tuning.bottleneck import DEFAULT_TARGETS

    size = s.adapter_size or max(8, shape.hidden // 16)
    targets = s.targets or DEFAULT_TARGETS
    return shape.layers * sum(_linear(o, size) + _linear(size, o) for name, (_, o) in shape.linear_per_layer.items()
                              if name in targets)


#: Trainable parameters per method; ``tests/unit/test_estimate.py`` checks each against the real count.
TRAINABLE: dict[str, Callable[[ModelShape, Setup], int]] = {
    "full": lambda shape, s: shape.params,
    "freeze": _freeze_params,
    "bitfit": lambda shape, s: shape.bias_params,
    "lora": lambda shape, s: _lora_params(shape, s, s.lora_rank),
    "qlora": lambda shape, s: _lora_params(shape, s, s.lora_rank),
    "dora": lambda shape, s: _lora_params(shape, s, s.lora_rank, magnitude=True),
    "adalora": lambda shape, s: _lora_params(shape, s, s.init_rank, extra=1),  # A, B and the singular values E
    "ia3": _ia3_params,
    "ln_tuning": _ln_params,
    "prompt": lambda shape, s: s.virtual_tokens * shape.hidden,
    "ptuning": _ptuning_params,
    "prefix": _prefix_params,
    "adapter": _adapter_params,
}


def _targeted(name: str, targets: str | list[str]) -> bool:
    if targets == "all-linear":
        return True
    if targets == "attention":
        return name in ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "c_attn")
    return name in targets


def memory_gib(shape: ModelShape, s: Setup) -> dict[str, float]:
    """Memory per device by component and in total (GiB), following the model in the module docstring."""
    compute = BYTES[s.precision]
    base_bytes = {4: BYTES["int4"], 8: BYTES["int8"]}[s.quant_bits] if method_spec(s.method).quantised else compute
    trainable = trainable_params(shape, s)
    mixed = s.precision != "fp32"
    weights = (shape.params - trainable) * base_bytes + trainable * compute
    gradients = trainable * compute
    optimizer = trainable * (8 + (4 if mixed else 0))
    act_unit = ACTIVATION_BYTES_PER_UNIT * (2 if s.precision == "fp32" else 1)
    tokens = s.batch * s.length
    if s.gradient_checkpointing:
        activations = tokens * shape.hidden * (2 * shape.layers + act_unit)
    else:
        activations = tokens * shape.hidden * act_unit * shape.layers
    activations += 2 * tokens * shape.vocab * 4  # fp32 logits and their gradient
    shard = max(1, s.devices)
    if s.zero_stage >= 1:
        optimizer /= shard
    if s.zero_stage >= 2:
        gradients /= shard
    if s.zero_stage >= 3:
        weights /= shard
    offloaded = optimizer + (weights if s.zero_stage >= 3 else 0) if s.offload else 0.0
    out = {"weights": weights, "gradients": gradients, "optimizer": optimizer, "activations": activations}
    if s.offload:
        out["optimizer"] = 0.0
        if s.zero_stage >= 3:
            out["weights"] = 0.0
    gib = {k: v / GIB for k, v in out.items()}
    gib["total"] = sum(gib.values())
    gib["offloaded_to_cpu"] = offloaded / GIB
    return gib


def hosted_cost(tokens: int, epochs: float, prices: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Cost = training tokens x epochs x unit price per 1,000 tokens (at least 1,000 tokens billed)."""
    billed = max(MIN_BILLED_TOKENS, math.ceil(tokens * epochs))
    return {name: {"price_per_1k_tokens": p, "billed_tokens": billed, "cost": round(billed / 1000 * p, 4),
                   "currency": "CNY"} for name, p in (prices or PRICES).items()}


def largest_batch(shape: ModelShape, s: Setup, available_gib: float, budget: float = 0.8) -> int:
    """The largest power-of-two batch (1-64) whose estimated memory fits ``budget`` x the available memory."""
    from dataclasses import replace

    best = 1
    for batch in (1, 2, 4, 8, 16, 32, 64):
        if memory_gib(shape, replace(s, batch=batch))["total"] <= budget * available_gib:
            best = batch
    return best


def available_memory_gib(on_gpu: bool) -> float:
    """Free memory of the training device: the GPU's total, or the machine's available RAM."""
    import torch

    if on_gpu:
        return torch.cuda.get_device_properties(0).total_memory / GIB
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024 / GIB
    except (OSError, KeyError, ValueError):
        return 8.0


def as_dict(obj: Any) -> dict[str, Any]:
    """Dataclass fields as a JSON-ready dict."""
    from dataclasses import asdict

    return asdict(obj)
