"""What ``tuneforge eval TARGET`` means: a run folder, a config (its run, or the base model), or a model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tuneforge.config import load_config
from tuneforge.config.schema import RunConfig
from tuneforge.models.loading import RUN_STATE
from tuneforge.training.rundir import run_name


@dataclass
class EvalTarget:
    """The config to read data and settings from, the tuned model (None: base only), and where to write."""

    cfg: RunConfig
    model: str | None
    base: str
    out_dir: Path
    report: Path | None  # the run's report.md to add the evaluation to


def _finished_model(run: Path) -> Path | None:
    model = run / "model"
    return model if (model / "tuneforge_training.json").is_file() else None


def _base_of(model: Path) -> str:
    return json.loads((model / "tuneforge_training.json").read_text(encoding="utf-8"))["base_model"]


def from_run(run: Path, overrides: list[str]) -> EvalTarget:
    """A finished run folder: its resolved config, its model against its base, files into ``run/eval``."""
    cfg = load_config(str(run / "config.yaml"), overrides)
    model = _finished_model(run)
    if model is None:
        return EvalTarget(cfg, None, cfg.model.name_or_path, run / "eval-base", None)
    return EvalTarget(cfg, str(run), _base_of(model), run / "eval", run / "report.md")


def resolve_target(target: str, overrides: list[str], file: str | None = None) -> EvalTarget:
    """Turn the CLI argument into an :class:`EvalTarget`.

    - a run folder -> tuned vs base;
    - a config -> its run when finished (tuned vs base), else the config's model alone (is tuning worth it?);
    - anything else is a model (name, folder, adapter) evaluated against ``--file`` on its own.
    """
    path = Path(target)
    if (path / RUN_STATE).is_file():
        return from_run(path, overrides)
    if path.suffix.lower() in (".yaml", ".yml"):
        cfg = load_config(target, overrides)
        run = Path(cfg.output.dir) / run_name(cfg, target)
        if (run / RUN_STATE).is_file() and _finished_model(run) is not None:
            return EvalTarget(cfg, str(run), _base_of(run / "model"), run / "eval", run / "report.md")
        return EvalTarget(cfg, None, cfg.model.name_or_path, Path(cfg.output.dir) / f"{run_name(cfg, target)}-base-eval",
                          None)
    datasets = [file] if file else ["(give --file)"]
    cfg = load_config(None, overrides, base={"data": {"datasets": datasets}})
    out = Path(cfg.output.dir) / f"eval-{path.name or 'model'}"
    if (path / "tuneforge_training.json").is_file():
        return EvalTarget(cfg, target, _base_of(path), out, None)
    return EvalTarget(cfg, None, target, out, None)  # a plain model: evaluated alone
