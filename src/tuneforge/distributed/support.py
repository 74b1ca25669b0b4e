"""What a distributed run may combine: checked before any process starts (docs/distributed.md)."""

from __future__ import annotations

from typing import Any

from tuneforge.config.catalog import method_spec
from tuneforge.config.schema import RunConfig
from tuneforge.distributed.strategies import STRATEGIES, Strategy
from tuneforge.models.tuning import TUNING
from tuneforge.utils.errors import ConfigError, Problem


def distributed_problems(cfg: RunConfig, stage: Any) -> list[Problem]:
    """Every reason this config cannot run with its strategy, at once."""
    d = cfg.distributed
    strategy = STRATEGIES.get(d.strategy)
    problems = list(strategy.problems(cfg))
    if d.strategy not in stage.strategies:
        working = [s for s in stage.strategies if s != "none"]
        fix = (f"use distributed.strategy {' or '.join(working)}" if working else
               "use distributed.strategy none (one process; model.device_map: auto spreads a large model over "
               "the GPUs)")
        problems.append(Problem(f"stage {stage.name!r} does not run under strategy {d.strategy!r}",
                                field="distributed.strategy", fix=fix))
    if cfg.model.device_map == "auto" and d.strategy != "none":
        problems.append(Problem(
            f"model.device_map 'auto' spreads one model over the GPUs of one process; strategy {d.strategy!r} "
            "starts one process per GPU", field="model.device_map",
            fix="drop model.device_map for data parallelism, or use distributed.strategy none"))
    if d.strategy == "none" and (d.nnodes > 1 or (d.nproc_per_node != "auto" and d.nproc_per_node > 1)):
        problems.append(Problem(
            f"distributed.strategy is 'none' but nnodes={d.nnodes}, nproc_per_node={d.nproc_per_node} ask for "
            "several processes", field="distributed.strategy", fix="choose ddp, fsdp or deepspeed"))
    if d.strategy != "none" and (cfg.search is not None or cfg.stages):
        problems.append(Problem(f"{'search' if cfg.search is not None else 'stages'} runs in one process",
                                field="distributed.strategy",
                                fix="train the chosen settings (or each stage) as its own distributed run"))
    if d.deepspeed_config and d.strategy != "deepspeed":
        problems.append(Problem("distributed.deepspeed_config is set but the strategy is not deepspeed",
                                field="distributed.deepspeed_config", fix="set distributed.strategy: deepspeed"))
    if d.strategy == "fsdp" and d.fsdp.activation_checkpointing and TUNING.get(cfg.method.name).adapter:
        # peft 0.21 finds adapter weights by module name; FSDP's checkpoint wrappers rename the modules, so
        # the saved adapter would be empty (seen here, and caught by the runner's empty-model check)
        problems.append(Problem("fsdp.activation_checkpointing with adapters saves an empty adapter (peft does not "
                                "see through FSDP's checkpoint wrappers)", field="distributed.fsdp.activation_checkpointing",
                                fix="use training.gradient_checkpointing: true instead (same memory saving)"))
    if d.strategy in ("fsdp", "deepspeed") and method_spec(cfg.method.name).quantised:
        problems.append(Problem(f"qlora under {d.strategy!r} would shard bitsandbytes' 4/8-bit weights, which "
                                "tuneforge does not test", field="method.name",
                                fix="use strategy ddp with qlora (the quantized base is small), or method lora "
                                    f"with {d.strategy}"))
    if d.strategy != "none" and cfg.method.name == "adalora":
        # its rank reallocation masks parameters between steps from each process's own gradients and its
        # penalty adds a second backward per micro-batch: neither is synchronised across processes here
        problems.append(Problem(f"adalora under {d.strategy!r} is not supported: its rank budget is reallocated "
                                "per process", field="method.name", fix="train adalora in one process, or use lora"))
    if d.strategy != "none" and cfg.method.name == "freeze" and cfg.method.freeze.unfreeze_at:
        # DDP and the sharded strategies fix the set of trainable parameters when they wrap the model
        problems.append(Problem("progressive unfreezing changes which parameters train during the run, which "
                                f"{d.strategy!r} does not allow", field="method.freeze.unfreeze_at",
                                fix="train it in one process, or drop method.freeze.unfreeze_at"))
    return problems


def check_distributed(cfg: RunConfig, stage: Any) -> Strategy:
    """The config's strategy, or a :class:`ConfigError` listing every problem.

    Raises:
        ConfigError: a stage or setting the strategy cannot run, or a missing package.
    """
    problems = distributed_problems(cfg, stage)
    if problems:
        raise ConfigError(f"cannot train with distributed.strategy {cfg.distributed.strategy!r}", problems)
    return STRATEGIES.get(cfg.distributed.strategy)
