"""``tuneforge eval CONFIG|RUN|MODEL``: base vs tuned on the same test items; endpoints and prediction files too."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from tuneforge.cli.common import console, err_console, handle_errors, print_json

OVERRIDES = typer.Argument(None, help="key.sub=value overrides, e.g. evaluation.max_samples=50")


@handle_errors
def evaluate(target: str = typer.Argument(None, help="A run folder, a config (.yaml), or a model with --file."),
             overrides: list[str] = OVERRIDES,
             split: str = typer.Option(None, "--split", help="test (default), validation or train."),
             file: str = typer.Option(None, "--file", help="Evaluate on this data file instead of a split."),
             predictions: str = typer.Option(None, "--predictions",
                                             help="Score a JSONL of {prediction, reference, prompt} made elsewhere."),
             endpoint: str = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL to evaluate."),
             model: str = typer.Option(None, "--model", help="Model name at --endpoint."),
             api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Env var with the endpoint key."),
             judge: bool = typer.Option(False, "--judge", help="Also score answers with the LLM judge."),
             out: Path = typer.Option(None, "--out", help="Folder for predictions, metrics and the chart."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object (n, metrics, judge, ...).")) -> None:
    """Evaluate: BLEU-4, ROUGE-1/2/L, exact match, perplexity (and a judge), base vs tuned, same examples."""
    from tuneforge.evaluation import evaluate as ev
    from tuneforge.evaluation.report import add_to_run_report
    from tuneforge.evaluation.target import resolve_target

    echo = (lambda m: err_console.print(m, highlight=False, markup=False)) if as_json else \
        (lambda m: console.print(m, highlight=False, markup=False))
    overrides = list(overrides or []) + (["evaluation.metrics=[bleu4,rouge,exact_match,ppl,judge]"] if judge else [])
    if predictions:
        t = resolve_target(target or "default", overrides, predictions)
        result = ev.evaluate_predictions(t.cfg, predictions, out or Path(predictions).with_suffix(".eval"), echo)
    elif endpoint:
        if not model:
            raise typer.BadParameter("--endpoint needs --model NAME", param_hint="--model")
        t = resolve_target(target or "default", overrides, file)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        result = ev.evaluate_endpoint(t.cfg, endpoint, model, out or t.out_dir.with_name(f"eval-{safe}"),
                                      os.environ.get(api_key_env), split, file, echo)
    else:
        if target is None:
            raise typer.BadParameter("give a run folder or a config (or --predictions / --endpoint)")
        t = resolve_target(target, overrides, file)
        result = ev.evaluate_target(t.cfg, t.model, t.base, out or t.out_dir, split, file, echo)
        if t.report is not None and out is None:
            md = next(p for p in result.files if p.name == "eval.md")
            chart = next((p for p in result.files if p.suffix == ".png"), md.with_name("eval.png"))
            add_to_run_report(t.report, md.read_text(encoding="utf-8"), chart)
    if as_json:
        print_json(result.to_json())
        return
    print_table(result.n, result.metrics, result.judge, result.verdict)
    for p in result.files:
        console.print(f"file: {p}")


def print_table(n: int, metrics: dict, judged: dict, lines: list[str]) -> None:
    """The base-vs-tuned table and the verdict lines."""
    from tuneforge.evaluation.report import table_rows

    header, rows = table_rows(metrics, judged)
    table = Table(title=f"evaluation on {n} examples")
    for h in header:
        table.add_column(h, justify="left" if h == "metric" else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for line in lines:
        console.print(f"- {line}", highlight=False, markup=False)
