"""Typed run configuration: schema, YAML loading, overrides, error reporting."""

from tuneforge.config.load import load_config, parse_overrides
from tuneforge.config.schema import RunConfig

__all__ = ["RunConfig", "load_config", "parse_overrides"]
