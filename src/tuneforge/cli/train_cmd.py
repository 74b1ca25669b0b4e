"""``tuneforge train CONFIG [key=value ...]``."""

from __future__ import annotations

import typer

from tuneforge.cli.common import console, handle_errors

OVERRIDES = typer.Argument(None, help="key.sub=value overrides, e.g. training.learning_rate=1e-4")


@handle_errors
def train(config: str = typer.Argument(..., help="The run config (.yaml)."), overrides: list[str] = OVERRIDES,
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run of the same name."),
          no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (logs only).")) -> None:
    """Train as configured; an unfinished run of the same name resumes from its last checkpoint."""
    from tuneforge.config import load_config
    from tuneforge.training.runner import train as run_training

    cfg = load_config(config, overrides or [])
    echo = lambda m: console.print(m, highlight=False, markup=False)  # noqa: E731
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
    if result.interrupted:
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
