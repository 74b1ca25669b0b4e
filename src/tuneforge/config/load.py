"""Load a run config from YAML plus ``key.sub=value`` overrides, reporting every problem at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.schema import RunConfig
from tuneforge.utils.errors import ConfigError, Problem
from tuneforge.utils.names import suggestion


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning syntax errors into a located :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", [Problem("no such file", file=str(path),
                          fix="check the path; run from the folder the config's paths are relative to")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML in {path}", [Problem(
            f"YAML syntax error: {getattr(exc, 'problem', exc)}", file=str(path), line=line,
            fix="check indentation and quoting near that line")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8", [Problem(
            str(exc), file=str(path), fix="save the file as UTF-8")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {path}", [Problem(
            f"the top level must be a mapping of sections, got {type(data).__name__}", file=str(path),
            fix="start the file with sections such as 'model:', 'data:', 'training:'")])
    return data


def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """Parse ``a.b=value`` strings; values are read as YAML so ``1e-4``, ``true``, ``[a, b]`` get types.

    Raises:
        ConfigError: listing every override without ``=``.
    """
    parsed, problems = [], []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(f"override {item!r} is not key=value", field=item,
                                    fix="write it as section.key=value, e.g. training.learning_rate=1e-4"))
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip().split("."), value))
    if problems:
        raise ConfigError("invalid command-line overrides", problems)
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Set each override into the nested mapping (numeric parts index into lists)."""
    for keys, value in overrides:
        node: Any = data
        for i, key in enumerate(keys[:-1]):
            if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
                continue
            if not isinstance(node, dict):
                raise ConfigError("invalid command-line override", [Problem(
                    f"'{'.'.join(keys[:i])}' is not a section", field=".".join(keys),
                    fix="override a key inside a section, e.g. data.max_length=512")])
            node = node.setdefault(key, {})
        last = keys[-1]
        if not isinstance(node, dict | list):
            raise ConfigError("invalid command-line override", [Problem(
                f"'{'.'.join(keys[:-1])}' holds a value, not a section", field=".".join(keys),
                fix="override the whole value instead, e.g. data.datasets=[{path: a.json, ratio: 0.5}]")])
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    """Build a validated :class:`RunConfig` from a YAML file and/or overrides.

    Args:
        path: YAML file; may be None when ``base`` or overrides give everything.
        overrides: ``key.sub=value`` strings applied on top of the file.
        base: A mapping used instead of a file (the CLI builds one for ``data check FILE``).

    Raises:
        ConfigError: with one :class:`Problem` per invalid key (exit code 2).
    """
    data = read_yaml(path) if path is not None else dict(base or {})
    data = apply_overrides(data, parse_overrides(overrides or []))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        source = str(path) if path is not None else None
        raise ConfigError(f"invalid config{' ' + source if source else ''}",
                          [_problem(err, source) for err in exc.errors()]) from None


def _problem(err: dict[str, Any], source: str | None) -> Problem:
    """Turn one pydantic error into a Problem naming the key, the bad value and the fix."""
    loc = [str(p) for p in err["loc"] if _is_key(p)]
    key = _dotted(loc)
    value = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        return Problem(f"unknown key.{suggestion(loc[-1], allowed)}", file=source, field=key,
                       fix=f"valid keys here: {', '.join(allowed)}")
    if kind == "missing":
        return Problem("required key is missing", file=source, field=key,
                       fix="add it; see `tuneforge config schema`")
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        return Problem(f"{value!r} is not allowed.{suggestion(str(value), allowed)}", file=source,
                       field=key, fix=f"use one of: {', '.join(allowed)}")
    msg = err["msg"].removeprefix("Value error, ")
    return Problem(f"got {value!r}: {msg}", file=source, field=key,
                   fix="see `tuneforge config schema` for the expected type and range")


def _is_key(part: int | str) -> bool:
    """False for the validator/union tags pydantic inserts into locations (``function-after[...]``)."""
    return isinstance(part, int) or part.isidentifier()


def _dotted(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _fields_at(loc: list[str]) -> list[str]:
    """Field names of the config section found at ``loc`` (for 'valid keys' and suggestions)."""
    model: type[BaseModel] = RunConfig
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        sub = _model_in(field.annotation)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as ``list[str | DatasetSpec]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) is not None else []:
        found = _model_in(arg)
        if found is not None:
            return found
    return None
