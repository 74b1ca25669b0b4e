"""Starting the workers: torch's elastic launcher, one agent per machine (docs/distributed.md).

``tuneforge train CONFIG`` with more than one process does not train itself: it checks what can be
checked before any worker starts (the config, the run folder, the port, the master's reachability), then
hands ``python -m tuneforge.cli.main train CONFIG ...`` to ``torch.distributed.launcher.elastic_launch``
with a static rendezvous (the same as ``torchrun --nnodes N --node_rank K --master_addr A --master_port P``).
Each worker runs the one training path of ``training/runner.py`` knowing its rank from the environment.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.distributed import world
from tuneforge.distributed.strategies import planned_world_size, processes
from tuneforge.utils.errors import ConfigError, Problem, TuneforgeError

#: torchrun's default rendezvous port, used across machines when the config names none.
DEFAULT_PORT = 29500
WORKER = ("-m", "tuneforge.cli.main", "train")


class LaunchError(TuneforgeError):
    """The workers could not start, or one of them ended the job."""


@dataclass(frozen=True)
class LaunchPlan:
    """Where this machine's workers meet the others."""

    nproc: int  # processes on this machine
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    timeout: int  # seconds for the rendezvous and for any collective

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes


def needs_launch(cfg: RunConfig) -> bool:
    """True when this config trains in several processes and we are not already one of them."""
    return not world.in_worker() and planned_world_size(cfg) > 1


def launch_plan(cfg: RunConfig) -> LaunchPlan:
    """The plan of this machine; on one machine an unset port is a free one."""
    d = cfg.distributed
    port = d.master_port or (free_port() if d.nnodes == 1 else DEFAULT_PORT)
    return LaunchPlan(processes(cfg), d.nnodes, d.node_rank, d.master_addr, port, d.timeout)


def free_port() -> int:
    """A TCP port nothing listens on now (the rendezvous binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def node_commands(plan: LaunchPlan, config: str, overrides: list[str]) -> list[str]:
    """The command to run on each machine, node 0 first: the same config, each with its node_rank.

    Across machines the port is written out (every machine must use the same one); on one machine the
    launcher picks a free port itself.
    """
    kept = [o for o in overrides if not o.startswith(("distributed.node_rank=", "distributed.master_port="))]
    port = [f"distributed.master_port={plan.master_port}"] if plan.nnodes > 1 else []
    return [shlex.join(["tuneforge", "train", config, *kept, *([f"distributed.node_rank={k}"] if plan.nnodes > 1
                                                                 else []), *port]) for k in range(plan.nnodes)]


def torchrun_equivalent(plan: LaunchPlan, config: str, overrides: list[str]) -> str:
    """The same launch written as a torchrun command (for clusters whose scheduler starts torchrun itself)."""
    kept = [o for o in overrides if not o.startswith("distributed.node_rank=")]
    return " ".join(["torchrun", f"--nnodes={plan.nnodes}", f"--nproc_per_node={plan.nproc}",
                     "--node_rank=$NODE_RANK", f"--master_addr={plan.master_addr}", f"--master_port={plan.master_port}",
                     *WORKER, shlex.quote(config), *map(shlex.quote, kept), "distributed.node_rank=$NODE_RANK"])


def launch(cfg: RunConfig, config: str, overrides: list[str], overwrite: bool, progress: bool,
           echo: Callable[[str], None]) -> None:
    """Check, then start this machine's workers and wait for the job to end.

    Machine 0 opens the run folder first, so a finished run is refused (or, with ``overwrite``, removed)
    before any worker starts; the workers then resume or start it.

    Raises:
        ConfigError: the strategy cannot run this config, the port is taken, or machine 0 is unreachable.
        RunExistsError: the run is finished and ``overwrite`` is not set.
        LaunchError: a worker failed or was killed (naming its rank), or not every machine joined in time.
    """
    from tuneforge.distributed.support import check_distributed
    from tuneforge.training.rundir import open_run
    from tuneforge.training.stages import STAGES

    check_distributed(cfg, STAGES.get(cfg.training.stage))
    plan = launch_plan(cfg)
    if plan.node_rank == 0:
        open_run(cfg, config, overwrite)
        _require_free(plan)
    else:
        _wait_for_master(plan)
    _worker_environment(cfg)
    args = (*WORKER, config, *overrides, *(() if progress else ("--no-progress",)))
    echo(f"launching {plan.nproc} worker(s) on machine {plan.node_rank} of {plan.nnodes} "
         f"(rendezvous {plan.master_addr}:{plan.master_port}, {plan.world} processes in all)")
    _run_agent(plan, args)


def _run_agent(plan: LaunchPlan, args: tuple[str, ...]) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=plan.nnodes, max_nodes=plan.nnodes, nproc_per_node=plan.nproc, run_id="tuneforge",
        role="tuneforge", rdzv_endpoint=f"{plan.master_addr}:{plan.master_port}", rdzv_backend="static",
        rdzv_configs={"rank": plan.node_rank, "timeout": plan.timeout}, max_restarts=0, monitor_interval=0.5,
        signals_to_handle="SIGTERM,SIGHUP,SIGQUIT")
    started = time.monotonic()
    # torch starts each worker in its own session, so a terminal's Ctrl-C reaches only this process. It is
    # passed on: the workers agree on a step, save a checkpoint there and exit 0 (training/callbacks.py).
    previous = signal.signal(signal.SIGINT, _forward_to_workers)
    try:
        elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as exc:
        first, failure = exc.get_first_failure()  # the cause; the launcher then stopped the others
        others = sorted(r for r in exc.failures if r != first)
        stopped = f"; the launcher then stopped rank(s) {', '.join(map(str, others))}" if others else ""
        raise LaunchError(f"worker rank {first} failed and the job was stopped{stopped}",
                          [_failure(first, failure)]) from None
    except Exception as exc:  # rendezvous and store errors come as several torch types
        raise _rendezvous_error(plan, exc, time.monotonic() - started) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _forward_to_workers(signum: int, frame: Any) -> None:
    """Send the signal on to every process this launcher started."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def _failure(rank: int, failure: Any) -> Problem:
    """One failed worker as a problem: its rank, pid, how it ended and what to do."""
    code = failure.exitcode
    if code is not None and code < 0:
        return Problem(f"worker rank {rank} (pid {failure.pid}) was killed by {signal.Signals(-code).name}",
                       field="distributed", fix="run the same command again: the run resumes from its last complete "
                       "checkpoint")
    return Problem(f"worker rank {rank} (pid {failure.pid}) exited with code {code}", field="distributed",
                   fix="correct what its error above says, then run the same command (an unfinished run resumes "
                       "from its last complete checkpoint)")


def _rendezvous_error(plan: LaunchPlan, exc: Exception, waited: float) -> LaunchError:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
    if plan.nnodes > 1:
        return LaunchError("the machines did not all join", [Problem(
            f"after {waited:.0f} s: {text}", field="distributed.nnodes",
            fix=f"start the same command on all {plan.nnodes} machines (node_rank 0..{plan.nnodes - 1}, see "
                "--print-launch) within distributed.timeout seconds, or lower distributed.nnodes")])
    return LaunchError("the workers could not start", [Problem(text, field="distributed")])


def _require_free(plan: LaunchPlan) -> None:
    """Machine 0 hosts the rendezvous: its port must be free now, not discovered busy by a hanging worker."""
    with socket.socket() as s:
        try:
            s.bind(("", plan.master_port))
        except OSError as exc:
            raise ConfigError("the rendezvous port is in use", [Problem(
                f"port {plan.master_port} on this machine is taken ({exc.strerror})", field="distributed.master_port",
                fix="choose another port (e.g. distributed.master_port=29501) on every machine, or stop the "
                    "process using it")]) from None


def _wait_for_master(plan: LaunchPlan) -> None:
    """Machines 1.. wait (at most ``timeout`` seconds) until machine 0's rendezvous port answers."""
    deadline = time.monotonic() + plan.timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((plan.master_addr, plan.master_port), timeout=2):
                return
        except OSError as exc:
            last = exc.strerror or str(exc)
            time.sleep(0.5)
    raise ConfigError("cannot reach machine 0", [Problem(
        f"{plan.master_addr}:{plan.master_port} did not answer within {plan.timeout} s ({last})",
        field="distributed.master_addr",
        fix="start node_rank 0 first (or within the timeout); check master_addr, master_port and the firewall")])


def _worker_environment(cfg: RunConfig) -> None:
    """Variables the workers inherit."""
    import torch

    if cfg.distributed.strategy == "deepspeed" and not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator (gloo/shm collectives)
    # the workers share this machine's cores (training/runner.py sets each one's thread count)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, processes(cfg)))))
    os.environ["PYTHONUNBUFFERED"] = "1"  # rank 0's lines appear as they are written

