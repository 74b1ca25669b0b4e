"""``tuneforge data check|inspect|split|convert|formats|templates``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tuneforge.cli.common import config_from_target, console, handle_errors, print_json, print_problems
from tuneforge.config.schema import RunConfig
from tuneforge.utils.errors import DataError, Problem

app = typer.Typer(no_args_is_help=True, help="Check, inspect, split and convert datasets.")
OVERRIDES = typer.Argument(None, help="key.sub=value config overrides")
FORMAT = typer.Option(None, "--format", help="Input format of a data FILE (default: detect).")
MAX_LENGTH = typer.Option(None, "--max-length", help="Token limit per example (data.max_length).")
MODEL = typer.Option(None, "--model", help="Model whose tokenizer is used (default: the embedded model).")
TEMPLATE = typer.Option(None, "--template", help="Chat template (default: the tokenizer's own).")
STAGE = typer.Option(None, "--stage", help="Stage to check against (default: from the config or the data).")


def _file_defaults(fmt: str | None, max_length: int | None, model: str | None, template: str | None,
                   method: str | None = None) -> dict[str, Any]:
    return {"format": fmt or "auto", "data.max_length": max_length, "model.name_or_path": model,
            "template.name": template, "method.name": method}


def _tokenizer_and_template(cfg: RunConfig) -> tuple[Any, Any]:
    from tuneforge.data.templates import resolve_template
    from tuneforge.models.loading import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.gguf_file, cfg.model.trust_remote_code)
    return tokenizer, resolve_template(cfg.template.name, tokenizer, cfg.template.system)


@app.command()
@handle_errors
def check(target: str = typer.Argument(..., help="A config (.yaml) or a data file/folder."),
          overrides: list[str] = OVERRIDES, json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
          fmt: str = FORMAT, max_length: int = MAX_LENGTH, model: str = MODEL, template: str = TEMPLATE,
          stage: str = STAGE, method: str = typer.Option(None, "--method", help="Tuning method (for volume advice).")
          ) -> None:
    """Read every record, process it as training will, and report all problems and quality figures."""
    from tuneforge.cli.common import is_config
    from tuneforge.data.check import check_data

    cfg = config_from_target(target, overrides or [], _file_defaults(fmt, max_length, model, template, method))
    tokenizer, tpl = _tokenizer_and_template(cfg)
    report = check_data(cfg, tokenizer, tpl, stage or (None if is_config(target) else "auto"))
    if json_out:
        print_json(report.to_json())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: Any) -> None:
    table = Table("dataset", "format", "records", "invalid", "used", "kinds", title="data check")
    for d in report.datasets:
        table.add_row(d["name"], d["format"], str(d["records"]), str(d["invalid"]), str(d["used"]),
                      ", ".join(f"{k}: {v}" for k, v in d["kinds"].items()))
    console.print(table)
    lengths = report.token_lengths
    console.print(f"token lengths: min {lengths['min']}, p50 {lengths['p50']}, p95 {lengths['p95']}, "
                  f"max {lengths['max']} (max_length {report.max_length}); truncated: {report.truncated}; "
                  f"dropped: {sum(report.dropped.values())}", highlight=False)
    console.print(f"duplicates: {report.duplicates['exact']} exact, {report.duplicates['near']} near", highlight=False)
    phrases = ", ".join(f"{p['phrase']!r} {p['share']:.0%}" for p in report.leading_phrases[:3])
    console.print(f"most common leading phrases: {phrases or '-'}", highlight=False)
    print_problems(report.warnings, "warnings", "yellow")
    print_problems(report.errors, "errors", "bold red")
    console.print("[green]ok[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]")


@app.command()
@handle_errors
def inspect(target: str = typer.Argument(..., help="A config (.yaml) or a data file/folder."),
            overrides: list[str] = OVERRIDES, n: int = typer.Option(2, "-n", help="How many examples."),
            fmt: str = FORMAT, max_length: int = MAX_LENGTH, model: str = MODEL, template: str = TEMPLATE) -> None:
    """Render examples through the template; trained tokens are green, masked ones dim."""
    from tuneforge.data.inspect import inspect_rows
    from tuneforge.data.loader import load_data
    from tuneforge.data.processors import ProcessOptions, process_examples

    cfg = config_from_target(target, overrides or [], _file_defaults(fmt, max_length, model, template))
    tokenizer, tpl = _tokenizer_and_template(cfg)
    data = load_data(cfg.data)
    print_problems(data.errors, "errors (these records are skipped here)", "bold red")
    if not data.examples:
        raise DataError("nothing to inspect", [Problem("no valid examples", field="data.datasets",
                                                       fix="fix the errors above")])
    kind = data.examples[0].kind
    sample = [ex for ex in data.examples if ex.kind == kind][:n]
    opts = ProcessOptions(tokenizer, tpl, cfg.data.max_length, cfg.template.train_on_prompt, cfg.template.mask_history)
    processed = process_examples(sample, opts)
    console.print(f"template: {tpl.name} (ends answers with {tpl.eot!r}); kind: {kind}; max_length: "
                  f"{cfg.data.max_length}", highlight=False)
    console.print(inspect_rows(processed, tokenizer, n))
    for reason, count in processed.stats.dropped.items():
        console.print(f"[yellow]{count} of these {len(sample)} example(s) dropped: {reason}[/] "
                      f"(data.max_length is {cfg.data.max_length})")


@app.command()
@handle_errors
def split(file: Path = typer.Argument(..., help="Data file to split."),
          ratios: str = typer.Option("7,1.5,1.5", help="train,validation,test ratios."),
          seed: int = typer.Option(42, help="Seed (same seed, same split)."),
          out: Path = typer.Option(..., "--out", help="Output folder."),
          overwrite: bool = typer.Option(False, help="Replace existing output files.")) -> None:
    """Write seeded, stable train/validation/test files in the input's format."""
    from tuneforge.data.split import split_file

    parts = _ratios(ratios)
    written = split_file(file, parts, seed, out, overwrite)
    for name, (path, count) in written.items():
        console.print(f"{name:<10} {count:>7} records -> {path}", highlight=False)


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 0 for v in values) or values[0] <= 0:
        raise DataError("invalid --ratios", [Problem(f"got {text!r}", field="--ratios",
                                                     fix="three non-negative numbers, e.g. 7,1.5,1.5")])
    return values  # type: ignore[return-value]


@app.command()
@handle_errors
def convert(file: Path = typer.Argument(..., help="Data file to convert."),
            to: str = typer.Option(..., "--to", help="alpaca, sharegpt or messages."),
            out: Path = typer.Option(..., "--out", help="Output file (.json, .jsonl, .csv, .parquet)."),
            fmt: str = FORMAT, overwrite: bool = typer.Option(False, help="Replace an existing output file.")) -> None:
    """Convert a dataset to another format (placeholders are kept as they are)."""
    from tuneforge.config.schema import DataConfig, DatasetSpec
    from tuneforge.data.convert import CONVERTERS, convert_examples
    from tuneforge.data.loader import load_data
    from tuneforge.data.writers import write_records

    CONVERTERS.get(to)
    if out.exists() and not overwrite:
        raise DataError("refusing to overwrite", [Problem("output exists", file=str(out), fix="pass --overwrite")])
    data = load_data(DataConfig(datasets=[DatasetSpec(path=str(file), format=fmt or "auto")]))
    if data.errors:
        raise DataError(f"cannot convert {file}", data.errors)
    records, problems = convert_examples(data.examples, to)
    if problems:
        raise DataError(f"{len(problems)} record(s) cannot be written as {to}", problems)
    write_records(out, records)
    console.print(f"{len(records)} records -> {out} ({to})", highlight=False)


@app.command()
def formats() -> None:
    """List the input formats."""
    from tuneforge.data.formats import FORMATS

    table = Table("format", "description")
    for name, spec in FORMATS.items():
        table.add_row(name, spec.description)
    console.print(table)


@app.command()
def templates() -> None:
    """List the registered chat templates (for models whose tokenizer has none)."""
    from rich.markup import escape

    from tuneforge.data.templates import TEMPLATES

    table = Table("template", "description")
    table.add_row("auto", "the tokenizer's own chat template (default)")
    for name, spec in TEMPLATES.items():
        table.add_row(name, escape(spec.description))  # descriptions quote tokens such as [/INST]
    console.print(table)
