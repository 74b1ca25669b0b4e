"""Shared CLI plumbing: consoles, error reporting, CONFIG-or-FILE arguments."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from tuneforge.config import load_config
from tuneforge.config.schema import DATA_SUFFIXES, RunConfig
from tuneforge.utils.errors import Problem, TuneforgeError, render_problems

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
CONFIG_SUFFIXES = (".yaml", ".yml")


def quiet_libraries() -> None:
    """Keep transformers/datasets progress bars and advisory warnings out of command output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import warnings

    # transformers 5.x deprecation notices about its own internals are not actionable for users
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # transformers is a dependency; only a broken install lacks it
        pass


def handle_errors(fn: F) -> F:
    """Print a :class:`TuneforgeError` with all its problems and exit with its code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TuneforgeError as exc:
            from tuneforge.distributed import world

            if not world.is_main():  # rank 0 prints the whole error; the others say only that they stopped
                if not isinstance(exc, world.PeerFailed):
                    err_console.print(f"[rank {world.rank()}] error: {exc.title}", highlight=False, markup=False)
                raise typer.Exit(exc.exit_code) from None
            # soft_wrap: paths and fixes stay on one line (copyable); the terminal wraps them
            err_console.print(f"[bold red]error:[/] {exc.title}", highlight=False, soft_wrap=True)
            if exc.problems:
                err_console.print(render_problems(exc.problems), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def print_problems(problems: list[Problem], title: str, style: str) -> None:
    """A titled, capped list of problems (part of a command's report, so on stdout)."""
    if problems:
        console.print(f"[{style}]{title} ({len(problems)}):[/]")
        console.print(render_problems(problems), highlight=False, markup=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (nothing else goes there with --json)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def is_config(path: str) -> bool:
    """YAML files are configs; anything else is read as a data file."""
    return Path(path).suffix.lower() in CONFIG_SUFFIXES


def config_from_target(target: str, overrides: list[str], file_defaults: dict[str, Any]) -> RunConfig:
    """A config from ``CONFIG`` (+ overrides), or a minimal one around a data ``FILE``.

    Args:
        target: A YAML config or a data file / folder.
        overrides: ``key=value`` strings.
        file_defaults: Sections to use with a data file (format, max_length, model, stage ...).
    """
    if is_config(target):
        return load_config(target, overrides)
    path = Path(target)
    if not path.exists():
        raise TuneforgeError(f"no such file: {target}", [Problem(
            "neither a config (.yaml) nor an existing data file", file=target,
            fix=f"give a config file or a data file ({', '.join(DATA_SUFFIXES)})")])
    base: dict[str, Any] = {"data": {"datasets": [{"path": target, "format": file_defaults.pop("format", "auto")}]}}
    for key, value in file_defaults.items():
        section, _, name = key.partition(".")
        if value is not None:
            base.setdefault(section, {})[name] = value
    return load_config(None, overrides, base=base)


def device_map_option(value: str | None) -> str | None:
    """``--device-map``: only 'auto' (or nothing) is meaningful; anything else is a usage error."""
    if value not in (None, "auto"):
        raise typer.BadParameter(f"{value!r}: use --device-map auto (spread the model over every GPU), or omit it")
    return value
