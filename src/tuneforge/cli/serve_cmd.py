"""``tuneforge serve``: the OpenAI-compatible HTTP API over the chat engine."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tuneforge.cli.common import console, device_map_option, handle_errors
from tuneforge.utils.errors import ConfigError


@handle_errors
def serve(models: list[str] = typer.Argument(..., help="Runs, model folders, adapters, .gguf files or 'default'; "
                                                      "served under their folder name (or NAME=PATH). Adapters "
                                                      "of one base share one copy of its weights."),
          host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to the network."),
          port: int = typer.Option(8000),
          api_key_env: str = typer.Option(None, "--api-key-env",
                                          help="Environment variable holding the API key every request must send "
                                               "as 'Authorization: Bearer <key>'."),
          max_batch: int = typer.Option(16, "--max-batch", help="Requests decoded together (rows of one batch)."),
          max_queue: int = typer.Option(64, "--max-queue", help="Waiting requests beyond which new ones get 429."),
          timeout: float = typer.Option(300.0, "--timeout", help="Seconds before a request gets 408."),
          max_tokens: int = typer.Option(256, "--max-tokens", help="max_tokens when a request does not say."),
          device_map: str = typer.Option(None, "--device-map", help="'auto': spread a model larger than one GPU "
                                         "over every GPU.")) -> None:
    """Serve models over an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)."""
    import uvicorn

    from tuneforge.inference import Engine
    from tuneforge.server.app import ServeOptions, create_app

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is not set or empty; "
                              f"export {api_key_env}=<key> first")
    names = dict(_named(m) for m in models)
    if len(names) < len(models):
        raise ConfigError("two models would be served under the same name; give one NAME=PATH")
    engines = dict(zip(names, Engine.load_many(list(names.values()), device_map=device_map_option(device_map)),
                       strict=True))  # adapters share their base
    app = create_app(engines, ServeOptions(key, max_batch, max_queue, timeout, max_tokens))
    console.print(f"serving {', '.join(engines)} on http://{host}:{port}/v1"
                  + (f" (API key from ${api_key_env})" if key else " (no API key)"))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _named(model: str) -> tuple[str, str]:
    """NAME=PATH, else the folder or file name ('default' stays 'default')."""
    if "=" in model:
        name, path = model.split("=", 1)
        return name, path
    return Path(model.rstrip("/")).name or model, model
