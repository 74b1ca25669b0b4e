"""Fill every ``None`` hyper-parameter from the rules of docs/advice.md and say why.

Each rule is a small function returning ``(value, reason)``; :func:`recommend` applies them in order
(later rules may read values filled by earlier ones) and returns the filled config with the list of
what it filled. Values the user gave are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from tuneforge.advice.estimate import ModelShape, Setup, largest_batch, memory_gib
from tuneforge.config.catalog import STAGE_TABLE, alignment_stages, lora_methods, method_spec
from tuneforge.config.schema import RunConfig
from tuneforge.distributed.strategies import global_batch, planned_world_size

#: Effective batch (examples per optimizer step) aimed at when the user gives neither batch nor accumulation.
EFFECTIVE_BATCH = 16
#: Fewest optimizer steps a plan should have: fewer and the model barely moves (docs/advice.md).
MIN_STEPS = 20
LORA_METHODS = lora_methods()


@dataclass(frozen=True)
class Advice:
    """One filled value: the config key, the value and the rule that chose it."""

    key: str
    value: object
    reason: str

    def line(self) -> str:
        """One human-readable line for the run log."""
        return f"{self.key} = {self.value}  ({self.reason})"


@dataclass(frozen=True)
class Facts:
    """What the rules look at (``shape`` and ``available_gib`` enable the memory-based batch rule)."""

    n_train: int
    n_params: int
    on_gpu: bool
    shape: ModelShape | None = None
    available_gib: float | None = None
    n_eval: int = 0


#: Alignment learning rates as a share of the SFT rate of the same method and model size, measured on the
#: shipped examples with bench/alignment_lr.py (docs/advice.md, "Learning rate", has the figures).
ALIGNMENT_LR_SHARE: dict[str, float] = {s.name: s.lr_share for s in STAGE_TABLE if s.lr_share is not None}
#: Stages that optimise a preference or reward signal against the model's own distribution.
ALIGNMENT_STAGES = alignment_stages()
#: Stages that train on preference or reward signals (alignment plus the reward model): they overfit in few epochs.
SIGNAL_STAGES = tuple(s.name for s in STAGE_TABLE if s.family in ("reward", "preference", "reinforcement"))
#: LoRA-family rate multiplier for classification (measured on examples/sentiment_cls.yaml, docs/advice.md).
CLASSIFY_LORA_FACTOR = 5.0
#: Classification stages: a new head on a pretrained body, fine-tuned for a few epochs (docs/advice.md, "Epochs").
CLASSIFY_STAGES = tuple(s.name for s in STAGE_TABLE if s.family == "classification")


def _epochs(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    if cfg.training.stage in SIGNAL_STAGES:
        epochs = 3 if f.n_train < 3_000 else 1
        return epochs, (f"{cfg.training.stage} on {f.n_train} examples: preference and reward training overfit "
                        "quickly (1-3 epochs; 3 below ~3,000 examples)")
    if cfg.training.stage in CLASSIFY_STAGES:
        epochs = next(e for limit, e in [(1_000, 8), (10_000, 4), (math.inf, 2)] if f.n_train < limit)
        return epochs, (f"{cfg.training.stage} on {f.n_train} examples: a classifier fine-tunes in 2-4 epochs "
                        "(8 below 1,000 examples, where each epoch is only a few steps)")
    table = [(300, 15), (3_000, 10), (15_000, 3), (60_000, 4), (math.inf, 2)]
    epochs = next(e for limit, e in table if f.n_train < limit)
    return epochs, f"{f.n_train} training examples: ~100 -> 15, ~1,000 -> 10, ~10,000 -> 2-3, 20-50k -> 4-5, 100k -> 2-3"


def _learning_rate(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    lr, why = _sft_learning_rate(cfg, f)
    if cfg.training.stage in CLASSIFY_STAGES and not method_spec(cfg.method.name).adapter and f.n_params < 1e9:
        return 3e-5, (f"{cfg.method.name} fine-tuning of a classifier below 1B: the BERT fine-tuning range "
                      "2e-5..5e-5 (the new head learns at the same rate)")
    if cfg.training.stage in CLASSIFY_STAGES and method_spec(cfg.method.name).uses_lora:
        return float(f"{lr * CLASSIFY_LORA_FACTOR:.3g}"), (
            f"{why}; x {CLASSIFY_LORA_FACTOR:g} for a classifier: its new head starts random and trains at the "
            "adapter's rate (examples/sentiment_cls.yaml: 0.83 held-out accuracy at 2e-4, 0.97 at 1e-3)")
    share = ALIGNMENT_LR_SHARE.get(cfg.training.stage)
    if share is None:
        return lr, why
    source = "GRPO's share, not measured on its own" if cfg.training.stage == "ppo" else "measured on the shipped examples"
    return float(f"{lr * share:.3g}"), f"{why}; x {share:g} for {cfg.training.stage} ({source})"


def _sft_learning_rate(cfg: RunConfig, f: Facts) -> tuple[float, str]:
    size, spec = f.n_params / 1e9, method_spec(cfg.method.name)
    if spec.adapter:
        lr = 2e-4 if size < 1 else 1e-4 if size < 10 else 5e-5
        why = f"{cfg.method.name} on a {size:.2g}B model (adapters take higher rates: 1e-4..2e-4)"
    else:
        lr = 1e-4 if size < 1 else 1e-5 if size < 10 else 5e-6
        why = f"{cfg.method.name} fine-tuning of a {size:.2g}B model (<1B 1e-4, 1-10B 1e-5, >10B 5e-6)"
    if spec.lr_factor != 1.0:
        lr, why = float(f"{lr * spec.lr_factor:.3g}"), f"{why}; {spec.lr_reason}"
    return lr, why


def _batch_size(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    cap = 16 if f.on_gpu else 4  # on a CPU larger rows bring no speed, only memory
    if f.shape is None or f.available_gib is None:
        return min(cap, 8), "a safe per-device batch on " + ("a GPU" if f.on_gpu else "a CPU")
    setup = setup_from_config(cfg, f.on_gpu)
    fits = largest_batch(f.shape, setup, f.available_gib)
    bs = min(cap, fits)
    need = memory_gib(f.shape, replace(setup, batch=bs))["total"]
    return bs, (f"batch {fits} fits 80% of {f.available_gib:.0f} GiB at length {setup.length}; "
                f"{bs} needs ~{need:.1f} GiB" + ("" if bs == fits else f" (capped at {cap} on this device)"))


def _gradient_accumulation(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    bs, n = cfg.training.batch_size or 1, planned_world_size(cfg)
    per_epoch = max(1, f.n_train // (bs * n))  # micro-batches per epoch over all processes
    ga = max(1, min(EFFECTIVE_BATCH // (bs * n), per_epoch // 4 or 1))
    spread = f" = {bs} per device x {ga} x {n} processes" if n > 1 else ""
    return ga, (f"global batch {bs * ga * n}{spread} (aim {EFFECTIVE_BATCH}, but at least ~4 optimizer steps "
                "per epoch)")


def _warmup(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    steps = total_steps(cfg, f.n_train)
    if f.n_train < 1_000:
        return 0.1, "small data: warm-up 0.1-0.2 of the steps"
    if steps > 2_000:
        return 0.03, f"a long run ({steps} steps): warm-up 0.02-0.05"
    return 0.05, "warm-up 0.05-0.1 of the steps"


def _weight_decay(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    return 0.01, "start at 0.01 (0.01-0.1); raise it when validation loss climbs"


def _eval_steps(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    steps = total_steps(cfg, f.n_train)
    every = max(1, steps // 10)
    why = f"about 10 evaluations over {steps} steps"
    # An evaluation should not read more rows than the training between two of them: on short runs
    # (an example's 10 steps) evaluating every step would take most of the time.
    floor = math.ceil(f.n_eval / global_batch(cfg))
    if floor > every:
        every = min(steps, floor)
        why = (f"every {every} of {steps} steps: each evaluation reads {f.n_eval} validation rows, no more than "
               "the training between two evaluations")
    return every, why


def _save_steps(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    return cfg.training.eval_steps, "save when evaluating, so every checkpoint has a validation loss"


def _logging_steps(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    steps = total_steps(cfg, f.n_train)
    return max(1, steps // 50), f"about 50 log lines over {steps} steps"


def _lora_alpha(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    return float(2 * cfg.method.lora.rank), "alpha = 2 x rank"


def _lora_dropout(cfg: RunConfig, f: Facts) -> tuple[object, str]:
    if f.n_train < 10_000:
        return 0.05, f"{f.n_train} examples is small data: dropout 0.05-0.1"
    return 0.0, "large data: no dropout"


Rule = Callable[[RunConfig, Facts], tuple[object, str]]
#: (section, key, rule) in application order. The plan (epochs, batch, accumulation) comes first: the
#: minimum-steps adjustment runs on it before the rules that depend on the number of steps.
PLAN_RULES: list[tuple[str, str, Rule]] = [
    ("training", "epochs", _epochs),
    ("training", "learning_rate", _learning_rate),
    ("training", "batch_size", _batch_size),
    ("training", "gradient_accumulation", _gradient_accumulation),
]
RULES: list[tuple[str, str, Rule]] = PLAN_RULES + [
    ("training", "warmup_ratio", _warmup),
    ("training", "weight_decay", _weight_decay),
    ("training", "eval_steps", _eval_steps),
    ("training", "save_steps", _save_steps),
    ("training", "logging_steps", _logging_steps),
    ("method.lora", "alpha", _lora_alpha),
    ("method.lora", "dropout", _lora_dropout),
]


def total_steps(cfg: RunConfig, n_train: int, world: int | None = None) -> int:
    """Optimizer steps: ``max_steps``, else epochs x ceil(n / global batch) (``world`` processes, default planned)."""
    t = cfg.training
    if t.max_steps:
        return t.max_steps
    return max(1, math.ceil((t.epochs or 1) * math.ceil(n_train / global_batch(cfg, world))))


def setup_from_config(cfg: RunConfig, on_gpu: bool) -> Setup:
    """The memory-relevant choices of a config (precision: bf16 on GPUs, fp32 on CPUs unless set).

    The distributed strategy's sharding (ZeRO stage or its FSDP equivalent, offload) over the planned
    processes is part of it: the per-device batch advice and ``estimate`` use the same figures.
    """
    from tuneforge.distributed.strategies import STRATEGIES

    t, m = cfg.training, cfg.method
    precision = t.precision if t.precision != "auto" else ("bf16" if on_gpu else "fp32")
    shard = STRATEGIES.get(cfg.distributed.strategy).sharding(cfg)
    from tuneforge.models.tuning.peft_methods import adalora_init_rank

    targets = {"ia3": m.ia3.targets, "ln_tuning": m.ln_tuning.targets, "adapter": m.adapter.targets}.get(m.name)
    v = m.prompt_learning
    return Setup(method=m.name, precision=precision, batch=t.batch_size or 1, length=cfg.data.max_length,
                 gradient_checkpointing=t.gradient_checkpointing, lora_rank=m.lora.rank, lora_targets=m.lora.targets,
                 trainable_layers=m.freeze.trainable_layers, phases=1 + len(m.freeze.unfreeze_at),
                 init_rank=adalora_init_rank(cfg), targets=targets, feedforward=m.ia3.feedforward,
                 virtual_tokens=v.virtual_tokens, encoder=v.encoder, encoder_hidden=v.encoder_hidden_size,
                 prefix_projection=v.prefix_projection, adapter_size=m.adapter.size,
                 quant_bits=m.quant_bits, zero_stage=shard.zero_stage, offload=shard.offload,
                 devices=planned_world_size(cfg))


def recommend(cfg: RunConfig, n_train: int, n_params: int, on_gpu: bool = False, shape: ModelShape | None = None,
              available_gib: float | None = None, n_eval: int = 0) -> tuple[RunConfig, list[Advice]]:
    """A copy of ``cfg`` with every ``None`` the rules cover filled, and what was filled and why.

    Args:
        cfg: The validated config.
        n_train: Training examples (after splitting and replay).
        n_params: Parameters of the base model.
        on_gpu: Whether training runs on a GPU.
        shape: The model's dimensions; with ``available_gib`` the batch is chosen from estimated memory.
        available_gib: Memory of the training device.
        n_eval: Validation examples (evaluations are spaced so they cost no more than the training between).
    """
    cfg = cfg.model_copy(deep=True)
    facts = Facts(n_train, n_params, on_gpu, shape, available_gib, n_eval)
    filled = _apply(cfg, facts, PLAN_RULES)
    filled = _reach_min_steps(cfg, n_train, filled)
    return cfg, filled + _apply(cfg, facts, RULES[len(PLAN_RULES):])


def _apply(cfg: RunConfig, facts: Facts, rules: list[tuple[str, str, Rule]]) -> list[Advice]:
    """Fill each ``None`` the rules cover (in order, in place) and say what was filled."""
    filled = []
    for section, key, rule in rules:
        obj = cfg
        for part in section.split("."):
            obj = getattr(obj, part)
        if getattr(obj, key) is None:
            value, reason = rule(cfg, facts)
            setattr(obj, key, value)
            filled.append(Advice(f"{section}.{key}", value, reason))
    return filled


def _max_epochs(cfg: RunConfig) -> float:
    """The most epochs the advice allows before overfitting: 3 for preference and reward stages, else 15."""
    return 3 if cfg.training.stage in SIGNAL_STAGES else 10 if cfg.training.stage in CLASSIFY_STAGES else 15


def _reach_min_steps(cfg: RunConfig, n_train: int, filled: list[Advice]) -> list[Advice]:
    """Never plan a run the step warning would warn against (docs/advice.md, "Enough steps").

    Only advised values move, in this order: halve the accumulation, then the per-device batch, then raise
    the epochs up to the overfitting limit. A ``max_steps`` or values the user set are left alone.
    """
    t = cfg.training
    advised = {a.key for a in filled}
    if t.max_steps or total_steps(cfg, n_train) >= MIN_STEPS:
        return filled
    before = total_steps(cfg, n_train)
    for key in ("gradient_accumulation", "batch_size"):
        while f"training.{key}" in advised and getattr(t, key) > 1 and total_steps(cfg, n_train) < MIN_STEPS:
            setattr(t, key, getattr(t, key) // 2)
    if "training.epochs" in advised and total_steps(cfg, n_train) < MIN_STEPS:
        per_epoch = math.ceil(n_train / global_batch(cfg))
        t.epochs = min(_max_epochs(cfg), max(t.epochs or 1, math.ceil(MIN_STEPS / per_epoch)))
    why = (f"lowered or raised to reach at least {MIN_STEPS} optimizer steps ({before} -> "
           f"{total_steps(cfg, n_train)}); docs/advice.md")
    out = []
    for a in filled:
        section, key = a.key.rsplit(".", 1)
        value = getattr(t, key) if section == "training" else a.value
        out.append(a if value == a.value else Advice(a.key, value, f"{a.reason}; {why}"))
    return out


def step_warnings(cfg: RunConfig, n_train: int) -> list[str]:
    """Advice on the resulting schedule (very few optimizer steps), naming what holds it there.

    After :func:`recommend` this fires only for values the user set or data too small for the limits.
    """
    steps = total_steps(cfg, n_train)
    if steps >= MIN_STEPS:
        return []
    t = cfg.training
    if t.max_steps:
        cause = f"training.max_steps is {t.max_steps}; raise it"
    elif (t.batch_size or 1) * (t.gradient_accumulation or 1) > 1:
        cause = (f"{n_train} examples at a global batch of {global_batch(cfg)} x {t.epochs:g} epochs; lower "
                 "training.batch_size or training.gradient_accumulation, or raise training.epochs")
    else:
        cause = (f"{n_train} examples are too few even at batch 1 and {t.epochs:g} epochs (more would overfit); "
                 "add data")
    return [f"only {steps} optimizer steps: the model will barely move ({cause})"]


# --- advice that does not fill a config value (shown by `tuneforge recommend`) ----------------------------

def method_advice(cfg: RunConfig, n_train: int) -> Advice:
    """LoRA for small single-task data, full fine-tuning when there is plenty of good data (docs/advice.md)."""
    advised = "lora" if n_train < 10_000 else "full"
    why = (f"{n_train} examples (< ~10,000, a single task): LoRA" if advised == "lora" else
           f"{n_train} examples: plenty of data, full fine-tuning can use it (LoRA stays cheaper)")
    if cfg.method.name != advised:
        why += f"; the config uses {cfg.method.name}"
    return Advice("method.name", advised, why)


def model_kind_advice(is_chat: bool, n_train: int) -> Advice:
    """Chat model for under ~10,000 examples; a base model for large, broad data (docs/advice.md)."""
    advised = "chat" if n_train < 10_000 else "base"
    have = "a chat (instruct) model" if is_chat else "a base model"
    why = (f"{n_train} examples: start from a chat model (keeps its instruction following)" if advised == "chat" else
           f"{n_train} examples of broad data: a base model learns your format without fighting its own; keep the "
           "model's own template")
    return Advice("model", advised, f"{why}; this config has {have}")


def lora_advice(cfg: RunConfig) -> list[Advice]:
    """Rank and targets by task (docs/advice.md): 8-16 default, all linear layers for knowledge / self-cognition."""
    lora = cfg.method.lora
    return [
        Advice("method.lora.rank", lora.rank, "8 or 16 by default; 4-8 for simple tasks, 32-64 for complex tasks or "
               "data far from pre-training"),
        Advice("method.lora.targets", lora.targets, "all linear layers for knowledge and self-cognition tasks; "
               "q_proj,v_proj or all attention for light style changes"),
    ]


def worth_tuning(metrics: dict[str, dict[str, float | None]]) -> Advice:
    """From an evaluation of an existing model on your task: is fine-tuning worth it? (docs/advice.md: evaluate before tuning)."""
    label, scores = next(iter(metrics.items()))
    bleu, em = scores.get("bleu4") or 0.0, scores.get("exact_match") or 0.0
    if em >= 90 or bleu >= 50:
        return Advice("fine-tune", "probably not", f"{label} already scores BLEU-4 {bleu:.1f}, exact match {em:.1f} on "
                      "your task: improve the prompt first")
    return Advice("fine-tune", "yes", f"{label} scores BLEU-4 {bleu:.1f}, exact match {em:.1f} on your task (an untuned "
                  "model usually scores under 20): fine-tuning should help")
