"""``tuneforge score RM --data FILE``: reward-model scores of a file's answers."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tuneforge.cli.common import console, handle_errors, print_json


@handle_errors
def score(model: str = typer.Argument(..., help="A reward-model run folder (stage: rm) or model folder."),
          data: str = typer.Option(..., "--data", help="A data file: pairs, KTO records or SFT records."),
          max_samples: int = typer.Option(None, "--max-samples", help="Score at most this many records."),
          out: Path = typer.Option(None, "--out", help="Write every score as JSONL here."),
          show: int = typer.Option(10, "--show", help="Rows shown in the table."),
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Score answers with a trained reward model; pairs also give pairwise accuracy and mean margin."""
    from tuneforge.evaluation.score import score_file

    result = score_file(model, data, max_samples)
    if out is not None:
        out.write_text("".join(json.dumps(r) + "\n" for r in result.rows), encoding="utf-8")
    if as_json:
        print_json(result.to_json())
        return
    table = Table(title=f"reward scores ({len(result.rows)} records)")
    keys = [k for k in result.rows[0] if k != "record"] if result.rows else []
    table.add_column("record")
    for k in keys:
        table.add_column(k.removeprefix("score_"), justify="right")
    for r in result.rows[:show]:
        table.add_row(str(r["record"]), *[f"{r[k]:.4f}" for k in keys])
    console.print(table)
    if result.accuracy is not None:
        console.print(f"pairwise accuracy: {result.accuracy:.3f}  mean margin: {result.margin:.4f}")
    if out is not None:
        console.print(f"file: {out}")
