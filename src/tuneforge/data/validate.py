"""Config checks that need the data layer (``tuneforge config validate``): names and references.

They run without reading the datasets, so validating a config stays instant.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.config.schema import RunConfig
from tuneforge.data.formats import FORMATS
from tuneforge.data.loader import resolve_spec
from tuneforge.data.templates import TEMPLATES
from tuneforge.utils.errors import Problem
from tuneforge.utils.names import suggestion


def data_config_problems(cfg: RunConfig) -> list[Problem]:
    """Unknown format or template names, missing files, unknown or hub-only dataset names."""
    problems = _name_problems(cfg)
    seen: set[str] = set()
    for key, specs in (("data.datasets", cfg.data.datasets), ("data.eval_datasets", cfg.data.eval_datasets)):
        for i, spec in enumerate(specs):
            if spec.format != "auto" and spec.format not in FORMATS:
                continue  # reported once by _name_problems
            found: list[Problem] = []
            resolved = resolve_spec(spec, cfg.data, found)
            for problem in found:  # a broken registry would otherwise be reported once per dataset
                if problem.message not in seen:
                    seen.add(problem.message)
                    problems.append(problem)
            if resolved is not None and not Path(resolved.path).exists():
                problems.append(Problem("file not found", file=str(resolved.path), field=f"{key}[{i}]",
                                        fix="check the path (relative paths are relative to the current folder)"))
    return problems


def _name_problems(cfg: RunConfig) -> list[Problem]:
    out = []
    formats = [("data.format", cfg.data.format)] + [
        (f"data.datasets[{i}].format", s.format) for i, s in enumerate(cfg.data.datasets)]
    for key, name in formats:
        if name != "auto" and name not in FORMATS:
            out.append(Problem(f"unknown data format {name!r}.{suggestion(name, FORMATS.names())}", field=key,
                               fix=f"use auto or one of: {', '.join(FORMATS.names())}"))
    name = cfg.template.name
    if name != "auto" and name not in TEMPLATES:
        out.append(Problem(f"unknown template {name!r}.{suggestion(name, TEMPLATES.names())}", field="template.name",
                           fix=f"use auto (the tokenizer's own) or one of: {', '.join(TEMPLATES.names())}"))
    return out
