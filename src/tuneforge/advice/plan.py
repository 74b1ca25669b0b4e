"""``recommend`` and ``estimate`` for a whole config: read the data and the model's shape, then apply docs/advice.md.

Nothing here loads model weights except the optional timing probe, which trains a few real steps.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from typing import Any

from tuneforge.advice.estimate import (
    ModelShape,
    available_memory_gib,
    hosted_cost,
    memory_gib,
    model_shape,
    trainable_params,
)
from tuneforge.advice.recommend import (
    LORA_METHODS,
    RULES,
    Advice,
    lora_advice,
    method_advice,
    model_kind_advice,
    recommend,
    setup_from_config,
    step_warnings,
    total_steps,
    worth_tuning,
)
from tuneforge.config.schema import RunConfig
from tuneforge.distributed.strategies import global_batch, planned_world_size


@dataclass
class Facts:
    """The data and model facts both commands start from."""

    cfg: RunConfig  # with every advised value filled
    advice: list[Advice]  # what was filled and why
    shape: ModelShape
    n_train: int
    tokens: int  # tokens of the processed training rows (after truncation), replay included
    on_gpu: bool
    available_gib: float
    is_chat: bool
    base: str


def gather(cfg: RunConfig) -> Facts:
    """Load and process the training data (no model weights) and fill the advice."""
    import torch

    from tuneforge.data.templates import resolve_template
    from tuneforge.models.loading import load_tokenizer, resolve_model
    from tuneforge.training.data import prepare
    from tuneforge.training.stages import STAGES

    base = resolve_model(cfg.model.name_or_path, cfg.model.gguf_file)
    tokenizer = load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code)
    template = resolve_template(cfg.template.name, tokenizer, cfg.template.system)
    data = prepare(cfg, tokenizer, template, cfg.training.stage)
    shape = model_shape(base, cfg.model.trust_remote_code)
    on_gpu = torch.cuda.is_available()
    available = available_memory_gib(on_gpu)
    # the same row counts as `train` (a KTO pair trains as two rows), so both plan the same run
    n_train, n_eval = STAGES.get(cfg.training.stage).planned_rows(data.train, data.eval)
    filled, advice = recommend(cfg, n_train, shape.params, on_gpu, shape, available, n_eval=n_eval)
    tokens = sum(len(x) for x in data.train.columns["input_ids"])
    is_chat = getattr(tokenizer, "chat_template", None) is not None and not _looks_base(base)
    return Facts(filled, advice, shape, n_train, tokens, on_gpu, available, is_chat, base)


def _looks_base(name: str) -> bool:
    lowered = name.lower()
    return "base" in lowered.rsplit("/", 1)[-1] and "instruct" not in lowered and "chat" not in lowered


def recommendations(cfg: RunConfig, eval_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every hyper-parameter of docs/advice.md with its value and reason, the method and model advice, and warnings."""
    f = gather(cfg)
    filled = {a.key: a for a in f.advice}
    items: list[Advice] = []
    for section, key, _ in RULES:
        name = f"{section}.{key}"
        if f.cfg.method.name not in LORA_METHODS and section == "method.lora":
            continue
        items.append(filled.get(name) or Advice(name, _get(f.cfg, name), "set in the config"))
    items += [method_advice(cfg, f.n_train), model_kind_advice(f.is_chat, f.n_train)]
    if f.cfg.method.name in LORA_METHODS:
        items += lora_advice(f.cfg)
    if eval_metrics:
        items.append(worth_tuning(eval_metrics))
    steps = total_steps(f.cfg, f.n_train)

    return {"model": f.base, "params": f.shape.params, "n_train": f.n_train, "total_steps": steps,
            "processes": planned_world_size(f.cfg), "global_batch": global_batch(f.cfg),
            "advice": [{"key": a.key, "value": a.value, "reason": a.reason} for a in items],
            "warnings": step_warnings(f.cfg, f.n_train)}


def _get(cfg: RunConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def estimate(cfg: RunConfig, probe: bool = True, zero_stage: int | None = None, offload: bool | None = None,
             devices: int | None = None, prices: dict[str, float] | None = None,
             probe_steps: int = 3) -> dict[str, Any]:
    """Parameters, memory by component, tokens, steps, time on this hardware and hosted cost.

    ``zero_stage``, ``offload`` and ``devices`` default to what the config's ``distributed`` section gives
    (the same figures the batch advice uses); given, they ask "what if".
    """
    f = gather(cfg)
    t = f.cfg.training
    planned = setup_from_config(f.cfg, f.on_gpu)
    setup = replace(planned, batch=t.batch_size or 1,
                    zero_stage=planned.zero_stage if zero_stage is None else zero_stage,
                    offload=planned.offload if offload is None else offload,
                    devices=planned.devices if devices is None else devices)
    zero_stage, offload, devices = setup.zero_stage, setup.offload, setup.devices
    per_step = global_batch(f.cfg, devices)
    steps_per_epoch = math.ceil(f.n_train / per_step)
    steps = total_steps(f.cfg, f.n_train, devices)
    epochs = steps / steps_per_epoch  # max_steps may override the epochs
    trained_tokens = int(f.tokens * epochs)
    out: dict[str, Any] = {
        "model": f.base, "params": f.shape.params, "trainable_params": trainable_params(f.shape, setup),
        "setup": {"method": setup.method, "precision": setup.precision, "batch": setup.batch,
                  "gradient_accumulation": t.gradient_accumulation, "length": setup.length,
                  "gradient_checkpointing": setup.gradient_checkpointing, "zero_stage": zero_stage,
                  "offload": offload, "devices": devices, "strategy": f.cfg.distributed.strategy,
                  "global_batch": per_step},
        "memory_gib": {k: round(v, 3) for k, v in memory_gib(f.shape, setup).items()},
        "available_gib": round(f.available_gib, 1), "n_train": f.n_train, "tokens": f.tokens,
        "epochs": round(epochs, 3), "steps": {"per_epoch": steps_per_epoch, "total": steps},
        "cost": hosted_cost(f.tokens, epochs, prices),
    }
    if probe:
        tps = probe_tokens_per_second(f.cfg, probe_steps)
        out["probe_tokens_per_s"] = round(tps, 1)
        out["seconds_estimate"] = round(trained_tokens / tps, 1)
    else:
        out["seconds_estimate"] = None
    return out


def probe_tokens_per_second(cfg: RunConfig, steps: int = 3) -> float:
    """Real tokens/s of this config on this machine, from a few steps in a throw-away run folder.

    The probe takes random examples (no length grouping, whose first batch is the longest) and no
    accumulation; the first step (warm-up, allocation) is left out of the median.
    """
    import json
    import statistics

    from tuneforge.training.runner import train

    probe = cfg.model_copy(deep=True)
    t = probe.training
    t.max_steps, t.gradient_accumulation, t.group_by_length = steps, 1, False
    t.save_steps = t.eval_steps = 10**9
    t.logging_steps = 1
    probe.evaluation.auto = probe.evaluation.forgetting = False  # a throw-away run: nothing to judge
    t.keep_best = False  # no validation pass to pick from
    probe.data.split = (1.0, 0.0, 0.0)  # no validation pass (transformers evaluates at the end of training)
    probe.data.eval_datasets = []
    probe.stages = []
    with tempfile.TemporaryDirectory() as tmp:
        probe.output.dir, probe.output.name = tmp, "probe"
        result = train(probe, progress=False, echo=lambda m: None)
        rows = [json.loads(x) for x in result.run.log.read_text(encoding="utf-8").splitlines() if x.strip()]
    rates = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    if not rates:
        return result.tokens / result.train_seconds if result.train_seconds else float("nan")
    return statistics.median(rates[1:] or rates)
