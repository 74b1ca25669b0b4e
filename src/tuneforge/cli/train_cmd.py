"""``tuneforge train CONFIG [key=value ...]``."""

from __future__ import annotations

from typing import Any

import typer

from tuneforge.cli.common import console, handle_errors

OVERRIDES = typer.Argument(None, help="key.sub=value overrides, e.g. training.learning_rate=1e-4")


@handle_errors
def train(config: str = typer.Argument(..., help="The run config (.yaml)."), overrides: list[str] = OVERRIDES,
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run of the same name."),
          no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (logs only)."),
          print_launch: bool = typer.Option(False, "--print-launch", help="Print the command to run on each "
                                            "machine of a distributed run, and exit.")) -> None:
    """Train as configured; an unfinished run of the same name resumes from its last checkpoint.

    With ``distributed.strategy`` and several processes, this command starts the workers itself.
    """
    from tuneforge.config import load_config
    from tuneforge.distributed import launch, world
    from tuneforge.training.runner import train as run_training

    cfg = load_config(config, overrides or [])
    echo = lambda m: console.print(m, highlight=False, markup=False)  # noqa: E731
    if print_launch:
        _print_launch(cfg, config, overrides or [])
        return
    if launch.needs_launch(cfg):
        launch.launch(cfg, config, overrides or [], overwrite, not no_progress, echo)  # rank 0 prints the outcome
        return
    if cfg.search is not None:
        from tuneforge.training.search import run_search

        found = run_search(cfg, config, overwrite, echo=echo, progress=not no_progress)
        if found is not None:
            console.print(f"best config: {found.best_config}")
            console.print(f"plot: {found.plot}")
            console.print(f"report: {found.report}")
            console.print(f"run: {found.root}")
        return
    if cfg.stages:
        from tuneforge.training.multistage import train_stages

        results = train_stages(cfg, config, overwrite, echo=lambda m: console.print(m, highlight=False, markup=False),
                               progress=not no_progress)
        for r in results:
            console.print(f"stage: {r.run.root}  ({r.steps} steps)")
        console.print(f"report: {results[-1].run.root.parent / 'report.md'}")
        console.print(f"run: {results[-1].run.root.parent}")
        return
    result = run_training(cfg, config, overwrite, echo=lambda m: console.print(m, highlight=False, markup=False),
                          progress=not no_progress)
    if result.interrupted or not world.is_main():  # rank 0 speaks for a distributed run
        return
    console.print(f"[green]finished[/]: {result.steps} steps, final loss {result.final_loss}")
    console.print(f"model: {result.run.model}")
    for p in result.plots:
        console.print(f"plot: {p}")
    if result.evaluation is not None:
        from tuneforge.cli.eval_cmd import print_table

        e = result.evaluation
        print_table(e.n, e.metrics, e.judge, e.verdict)
    console.print(f"report: {result.report}")
    console.print(f"run: {result.run.root}")


def _print_launch(cfg: Any, config: str, overrides: list[str]) -> None:
    """One command per machine, then the torchrun equivalent."""
    from tuneforge.distributed import launch

    plan = launch.launch_plan(cfg)
    commands = launch.node_commands(plan, config, overrides)
    console.print(f"# {cfg.distributed.strategy}: {plan.nnodes} machine(s) x {plan.nproc} process(es) = {plan.world}; "
                  "run on each machine, from the same folder, with the same config and data:",
                  highlight=False, markup=False, soft_wrap=True)
    if plan.nnodes > 1 and plan.master_addr in ("127.0.0.1", "localhost"):
        console.print("# note: distributed.master_addr is this machine's loopback address; the other machines need "
                      "machine 0's network address", highlight=False, markup=False, soft_wrap=True)
    for k, command in enumerate(commands):
        console.print(f"# machine {k}\n{command}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"# the same with torchrun (NODE_RANK = 0..{plan.nnodes - 1}):\n"
                  f"{launch.torchrun_equivalent(plan, config, overrides)}", highlight=False, markup=False,
                  soft_wrap=True)
