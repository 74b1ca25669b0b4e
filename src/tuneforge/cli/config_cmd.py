"""``tuneforge config validate|show|schema``."""

from __future__ import annotations

import json

import typer
import yaml

from tuneforge.cli.common import console, handle_errors, print_json
from tuneforge.config import RunConfig, load_config
from tuneforge.utils.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Validate, show and describe run configs.")
OVERRIDES = typer.Argument(None, help="key.sub=value overrides, e.g. training.learning_rate=1e-4")


@app.command()
@handle_errors
def validate(config: str, overrides: list[str] = OVERRIDES) -> None:
    """Check a config: every problem at once, each with the key, the value and the fix (exit 2 if invalid)."""
    cfg = load_config(config, overrides or [])
    problems = semantic_problems(cfg)
    if problems:
        raise ConfigError(f"invalid config {config}", problems)
    console.print(f"[green]valid[/]: {config}")


def semantic_problems(cfg: RunConfig) -> list:
    """Checks beyond the schema that need the data layer: format and template names, dataset references."""
    from tuneforge.data.validate import data_config_problems

    return data_config_problems(cfg)


@app.command()
@handle_errors
def show(config: str, overrides: list[str] = OVERRIDES,
         json_out: bool = typer.Option(False, "--json", help="Print JSON instead of YAML.")) -> None:
    """Print the config with every default filled in."""
    cfg = load_config(config, overrides or [])
    data = cfg.model_dump(mode="json")
    if json_out:
        print_json(data)
    else:
        console.print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), highlight=False, markup=False)


@app.command()
def schema() -> None:
    """Print the JSON schema of the config (every key with its description)."""
    print(json.dumps(RunConfig.model_json_schema(), indent=2, ensure_ascii=False))
