"""``tuneforge webui``: the browser UI (gradio) over the same commands."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.common import console, handle_errors


@handle_errors
def webui(port: int = typer.Option(7860, help="Port to listen on."),
          host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the UI to the network."),
          workdir: Path = typer.Option(Path("."), "--workdir",
                                       help="Working directory: configs, logs and runs go here; typed paths are "
                                            "confined to it and the --data-dir folders."),
          data_dir: list[Path] = typer.Option([], "--data-dir", help="Another folder the UI may read data from "
                                                                     "(repeatable).")) -> None:
    """Open the web UI: Train, Evaluate, Chat and Export tabs, in English or Chinese."""
    from tuneforge.webui.app import build, launch

    demo = build(workdir, [str(d) for d in data_dir])
    console.print(f"tuneforge web UI on http://{host}:{port} (working directory {workdir.resolve()})")
    launch(demo, server_name=host, server_port=port, show_error=True, quiet=True)
