"""The ``tuneforge`` command."""

from __future__ import annotations

import typer

from tuneforge import __version__
from tuneforge.cli import (
    advice_cmd,
    chat_cmd,
    config_cmd,
    data_cmd,
    eval_cmd,
    export_cmd,
    models_cmd,
    score_cmd,
    serve_cmd,
    train_cmd,
    webui_cmd,
)
from tuneforge.cli.common import quiet_libraries

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="tuneforge: fine-tune causal language models you can trust (CPU first).")
app.add_typer(data_cmd.app, name="data")
app.add_typer(config_cmd.app, name="config")
app.add_typer(models_cmd.app, name="models")
app.command("chat")(chat_cmd.chat)
app.command("train")(train_cmd.train)
app.command("export")(export_cmd.export)
app.command("eval")(eval_cmd.evaluate)
app.command("recommend")(advice_cmd.recommend)
app.command("estimate")(advice_cmd.estimate)
app.command("score")(score_cmd.score)
app.command("serve")(serve_cmd.serve)
app.command("webui")(webui_cmd.webui)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    """Console-script entry point."""
    quiet_libraries()
    app()


if __name__ == "__main__":
    main()
