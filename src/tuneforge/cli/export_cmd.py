"""``tuneforge export RUN --out DIR``."""

from __future__ import annotations

import typer

from tuneforge.cli.common import console, handle_errors


@handle_errors
def export(run: str = typer.Argument(..., help="A finished run folder (or its model/ folder)."),
           out: str = typer.Option(..., "--out", help="Folder for the merged model."),
           overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder.")) -> None:
    """Merge the adapter into its base, save safetensors + tokenizer + chat template, and verify the result."""
    from tuneforge.export import export_run

    result = export_run(run, out, overwrite)
    v = result.verification
    console.print(f"[green]exported[/]{' (adapter merged)' if result.merged else ''}: {result.out}")
    console.print(f"verified: greedy answers equal on {v.greedy_equal}/{v.probes} probes, "
                  f"max |logit difference| {v.max_logit_diff:.2e}")
