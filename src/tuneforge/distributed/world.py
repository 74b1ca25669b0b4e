"""Inside a worker: who am I, and the few collective steps the shared training path needs.

Workers are started by torch's elastic launcher (``distributed/launch.py``), which sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE``. Outside a launcher every helper here behaves as
the only process of a world of one, so the single-process path calls them unconditionally.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from tuneforge.utils.errors import TuneforgeError

T = TypeVar("T")


class PeerFailed(TuneforgeError):
    """Another rank failed first; it prints the error, this rank only stops (exit code 1, no message)."""


def in_worker() -> bool:
    """True inside a process started by the elastic launcher."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """Processes in the whole job (1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 outside a launcher)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine: its GPU index."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world_size() -> int:
    """Processes on this machine."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0: the one process that writes the run folder's logs, report and final model."""
    return rank() == 0


def start(timeout_s: int) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) with a bounded timeout for every collective.

    accelerate's shared state is created here so that ``TrainingArguments`` later finds it joined and
    the timeout, not transformers' 30-minute default, bounds a hang.
    """
    if world_size() == 1:
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank (the data is prepared once).

    An error on rank 0 reaches the other ranks as :class:`PeerFailed`, so no rank waits for an answer
    that will not come.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except BaseException as exc:
            dist.broadcast_object_list([("error", f"{type(exc).__name__}: {exc}")], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise PeerFailed(f"rank 0 failed: {value}")
    return value


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (a no-op in one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
