"""``tuneforge webui``: the browser UI (gradio) over the same commands."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.common import console, handle_errors
from tuneforge.webui.access import DEFAULT_AUTH_ENV


@handle_errors
def webui(port: int = typer.Option(7860, help="Port to listen on."),
          host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback needs a login."),
          workdir: Path = typer.Option(Path("."), "--workdir",
                                       help="Working directory: configs, logs and runs go here; typed paths are "
                                            "confined to it and the --data-dir folders."),
          data_dir: list[Path] = typer.Option([], "--data-dir", help="Another folder the UI may read data from "
                                                                     "(repeatable)."),
          auth_env: str | None = typer.Option(None, "--auth-env", help=f"Environment variable holding the login, "
                                              f"user:password (default: {DEFAULT_AUTH_ENV} when it is set)."),
          insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth",
                                                help="Allow a non-loopback --host without a login.")) -> None:
    """Open the web UI: Train, Evaluate, Chat and Export tabs, in English or Chinese."""
    from tuneforge.webui.access import check_exposure, credentials, is_loopback

    auth = credentials(auth_env or DEFAULT_AUTH_ENV, required=auth_env is not None)
    check_exposure(host, auth, insecure_no_auth)
    from tuneforge.webui.app import build, launch

    demo = build(workdir, [str(d) for d in data_dir])
    login = f", login required ({len(auth)} user(s))" if auth else ", no login"
    console.print(f"tuneforge web UI on http://{host}:{port} (working directory {workdir.resolve()}{login})")
    if not auth and not is_loopback(host):
        console.print("[yellow]warning:[/] the UI is open to the network without a login (--insecure-no-auth)")
    launch(demo, server_name=host, server_port=port, show_error=True, quiet=True, auth=auth)
