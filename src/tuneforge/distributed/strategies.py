"""Distributed strategies (docs/distributed.md): each turns the run config into transformers' own settings.

No parallelism is written here: DDP is torch's ``DistributedDataParallel``, FSDP is FSDP2 (``fully_shard``)
through accelerate, DeepSpeed is DeepSpeed through accelerate; a strategy only says which
``TrainingArguments`` keywords select and configure the engine, what it needs installed, and how it
shards memory (for ``estimate`` and the batch advice).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.utils.errors import ConfigError, Problem
from tuneforge.utils.names import Registry


@dataclass(frozen=True)
class Sharding:
    """How a strategy divides training memory over the processes (ZeRO terms, used by the estimate)."""

    zero_stage: int = 0  # 0 replicated, 1 optimizer states, 2 + gradients, 3 + weights
    offload: bool = False  # optimizer states (and with stage 3 the weights) live in CPU memory


class Strategy:
    """One process per device, every one a full copy: the base of the others and the ``none`` strategy."""

    name = "none"
    #: Python package the engine needs (a clear error names it when missing).
    package: str | None = None
    install_hint = ""

    def problems(self, cfg: RunConfig) -> list[Problem]:
        """What stops this strategy from running this config here (package missing, ...)."""
        if self.package and importlib.util.find_spec(self.package) is None:
            return [Problem(f"strategy {self.name!r} needs the {self.package} package, which is not installed",
                            field="distributed.strategy", fix=self.install_hint)]
        return []

    def sharding(self, cfg: RunConfig) -> Sharding:
        """The memory division this strategy gives."""
        return Sharding()

    def training_args(self, cfg: RunConfig, precision: str, world: int) -> dict[str, Any]:
        """``TrainingArguments`` keywords selecting and configuring the engine."""
        return {}

    def release(self) -> None:
        """After training: undo engine hooks that would change how rank 0 alone loads a model for evaluation."""


class Ddp(Strategy):
    """``DistributedDataParallel``: the model fits one device; gradients are averaged after each backward."""

    name = "ddp"

    def training_args(self, cfg: RunConfig, precision: str, world: int) -> dict[str, Any]:
        # Every trainable parameter takes part in every step (adapters, freeze, full), so DDP need not
        # search the graph for unused ones each step.
        return {"ddp_find_unused_parameters": False, "ddp_timeout": cfg.distributed.timeout}


class Fsdp(Strategy):
    """FSDP2 through accelerate: weights, gradients and optimizer states sharded layer by layer."""

    name = "fsdp"

    def sharding(self, cfg: RunConfig) -> Sharding:
        f = cfg.distributed.fsdp
        return Sharding(3 if f.sharding == "full_shard" else 2, f.cpu_offload)

    def training_args(self, cfg: RunConfig, precision: str, world: int) -> dict[str, Any]:
        f = cfg.distributed.fsdp
        # Checkpoints are sharded (each rank writes its own part); the final model is gathered into one
        # full state dict by the runner (training/runner.py, _save_final).
        return {"fsdp": True, "ddp_timeout": cfg.distributed.timeout, "fsdp_config": {
            "version": 2, "reshard_after_forward": f.sharding == "full_shard", "cpu_offload": f.cpu_offload,
            "activation_checkpointing": f.activation_checkpointing, "state_dict_type": "SHARDED_STATE_DICT",
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}}


class DeepSpeed(Strategy):
    """DeepSpeed ZeRO 1-3 (with optional CPU offload) through accelerate, from a generated JSON."""

    name = "deepspeed"
    package = "deepspeed"
    install_hint = ("pip install 'tuneforge[deepspeed]' (without a GPU: DS_BUILD_OPS=0 pip install deepspeed), "
                    "or use strategy fsdp, which needs nothing extra")

    def sharding(self, cfg: RunConfig) -> Sharding:
        d = cfg.distributed
        return Sharding(d.zero_stage, d.offload != "none")

    def training_args(self, cfg: RunConfig, precision: str, world: int) -> dict[str, Any]:
        return {"deepspeed": deepspeed_config(cfg, precision, world), "ddp_timeout": cfg.distributed.timeout}

    def release(self) -> None:
        # Under ZeRO-3 transformers builds every model inside zero.Init (a collective); rank 0 loading the
        # saved model for evaluation alone would wait for the other ranks forever.
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


STRATEGIES: Registry[Strategy] = Registry("distributed strategy")
for _s in (Strategy(), Ddp(), Fsdp(), DeepSpeed()):
    STRATEGIES.register(_s.name, _s)


def deepspeed_config(cfg: RunConfig, precision: str, world: int) -> dict[str, Any]:
    """The DeepSpeed JSON of this run: the user's file (checked against the config) with our values filled.

    Raises:
        ConfigError: the user's file cannot be read, or sets a value the run config contradicts.
    """
    ours = _generated(cfg, precision, world)
    path = cfg.distributed.deepspeed_config
    if path is None:
        return ours
    theirs = _read_json(path)
    problems = [Problem(f"{key} is {got!r} in the DeepSpeed file but the run config gives {want!r}", file=path,
                        field=key, fix=f"remove it or set it to \"auto\" (tuneforge fills it from {source}), or "
                        f"change {source}")
                for key, want, source in _checked(ours) for got in [_lookup(theirs, key)]
                if got is not None and got != "auto" and got != want]
    if problems:
        raise ConfigError("the DeepSpeed config contradicts the run config", problems)
    return _merge(theirs, ours)


def _generated(cfg: RunConfig, precision: str, world: int) -> dict[str, Any]:
    t, d = cfg.training, cfg.distributed
    bs, ga = t.batch_size or 1, t.gradient_accumulation or 1
    zero: dict[str, Any] = {"stage": d.zero_stage, "contiguous_gradients": True, "overlap_comm": False}
    if d.offload != "none":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if d.offload == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    if d.zero_stage == 3:  # the final save gathers the full weights (else an adapter or model would be empty)
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": bs, "gradient_accumulation_steps": ga, "train_batch_size": bs * ga * world,
        "gradient_clipping": t.max_grad_norm,
        "bf16": {"enabled": precision == "bf16"}, "fp16": {"enabled": precision == "fp16"},
        "zero_optimization": zero,
        # the Trainer's own AdamW runs on the offloaded states (no DeepSpeed CPU-Adam build needed)
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1, "wall_clock_breakdown": False,
    }


def _checked(ours: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(DeepSpeed key, value from the run config, the config key it comes from)."""
    zero = ours["zero_optimization"]
    return [
        ("train_micro_batch_size_per_gpu", ours["train_micro_batch_size_per_gpu"], "training.batch_size"),
        ("gradient_accumulation_steps", ours["gradient_accumulation_steps"], "training.gradient_accumulation"),
        ("train_batch_size", ours["train_batch_size"], "batch_size x gradient_accumulation x processes"),
        ("gradient_clipping", ours["gradient_clipping"], "training.max_grad_norm"),
        ("bf16.enabled", ours["bf16"]["enabled"], "training.precision"),
        ("fp16.enabled", ours["fp16"]["enabled"], "training.precision"),
        ("zero_optimization.stage", zero["stage"], "distributed.zero_stage"),
        ("zero_optimization.offload_optimizer.device", zero.get("offload_optimizer", {}).get("device", "none"),
         "distributed.offload"),
        ("zero_optimization.offload_param.device", zero.get("offload_param", {}).get("device", "none"),
         "distributed.offload"),
    ]


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _merge(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The user's JSON with every missing or ``auto`` value taken from ours (theirs wins elsewhere)."""
    out = dict(theirs)
    for key, value in ours.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif out.get(key) in (None, "auto"):
            out[key] = value
    return out


def _read_json(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("DeepSpeed config not found", [Problem(
            "no such file", file=path, field="distributed.deepspeed_config",
            fix="give the path of a DeepSpeed JSON file, or remove the key to have one generated")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError("DeepSpeed config is not valid JSON", [Problem(
            f"{exc.msg}", file=path, line=exc.lineno, field="distributed.deepspeed_config",
            fix="fix the JSON syntax")]) from None
    if not isinstance(data, dict):
        raise ConfigError("DeepSpeed config is not a JSON object", [Problem(
            "the file holds a JSON " + type(data).__name__, file=path, field="distributed.deepspeed_config",
            fix="a DeepSpeed config is one JSON object, e.g. {\"zero_optimization\": {\"stage\": 3}}")])
    return data


def processes(cfg: RunConfig) -> int:
    """Processes per machine this config asks for: ``auto`` is every GPU, or 1 without one."""
    n = cfg.distributed.nproc_per_node
    if n != "auto":
        return int(n)
    import torch

    return max(1, torch.cuda.device_count())


def planned_world_size(cfg: RunConfig) -> int:
    """Processes in the whole job (1 for strategy none); inside a worker, the launched world."""
    from tuneforge.distributed import world

    if world.in_worker():
        return world.world_size()
    if cfg.distributed.strategy == "none":
        return 1
    return processes(cfg) * cfg.distributed.nnodes


def global_batch(cfg: RunConfig, world: int | None = None) -> int:
    """Examples per optimizer step: per-device batch x accumulation x processes."""
    t = cfg.training
    n = planned_world_size(cfg) if world is None else world
    return (t.batch_size or 1) * (t.gradient_accumulation or 1) * max(1, n)

