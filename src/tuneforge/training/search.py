"""Hyper-parameter search with Optuna: every trial is an ordinary sub-run of the one training path.

Layout inside the search's run folder::

    study.db            Optuna study (SQLite): a re-run of the same command resumes the search
    trials/trial-<id>/  one normal run folder per trial (<id> hashes the trial's values, so an
                        interrupted trial resumes from its own last checkpoint)
    best_config.yaml    the config of the best trial, ready for `tuneforge train`
    plots/trials.png    objective per trial (pruned trials marked)
    report.md           the trial table

Pruning: each evaluation reports the eval loss to Optuna; a trial worse than the median of earlier
trials at the same step is stopped (median pruner).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from tuneforge.config.schema import ParamSpace, RunConfig, SearchConfig
from tuneforge.training.rundir import run_name
from tuneforge.utils.errors import ConfigError, Problem

Echo = Callable[[str], None]
MINIMISED = ("eval_loss",)


@dataclass
class SearchResult:
    """The finished study and what was written."""

    root: Path
    best_params: dict[str, Any]
    best_value: float
    best_config: Path
    trials: list[dict[str, Any]]
    plot: Path
    report: Path


class PruningCallback(TrainerCallback):
    """Reports every eval loss to the trial and stops training when Optuna says to prune."""

    def __init__(self, trial: Any, enabled: bool) -> None:
        self.trial, self.enabled, self.pruned = trial, enabled, False

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        """Report, and stop this trial when it is worse than the median of earlier ones."""
        if not metrics or "eval_loss" not in metrics:
            return
        self.trial.report(metrics["eval_loss"], state.global_step)
        if self.enabled and self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True


def apply_params(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """A copy of ``cfg`` with dotted keys set (validated like any config value), search removed."""
    data = cfg.model_dump(mode="json")
    data["search"] = None
    for key, value in params.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise _bad_key(key)
            node = node[part]
        if last not in node:
            raise _bad_key(key)
        node[last] = value
    return RunConfig.model_validate(data)


def _bad_key(key: str) -> ConfigError:
    return ConfigError("unknown key in search.space", [Problem(
        f"{key!r} is not a config key", field=f"search.space.{key}",
        fix="use dotted keys of the config, e.g. training.learning_rate or method.lora.rank")])


def suggest(trial: Any, space: dict[str, ParamSpace]) -> dict[str, Any]:
    """Values for one trial: categorical for ``choices``, int ranges for integer bounds, else float."""
    params = {}
    for key, p in space.items():
        if p.choices is not None:
            params[key] = trial.suggest_categorical(key, p.choices)
        elif float(p.low).is_integer() and float(p.high).is_integer() and not p.log and key.endswith(
                ("rank", "batch_size", "gradient_accumulation", "epochs")):
            params[key] = trial.suggest_int(key, int(p.low), int(p.high))
        else:
            params[key] = trial.suggest_float(key, p.low, p.high, log=p.log)
    return params


def trial_id(params: dict[str, Any]) -> str:
    """A short stable id of a trial's values (its sub-run folder name)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_search(cfg: RunConfig, config_path: str | None, overwrite: bool = False, echo: Echo = print,
               progress: bool = True) -> SearchResult | None:
    """Run (or resume) the study of ``cfg.search`` and write the best config, plot and report.

    Returns None when interrupted (Ctrl-C): the same command resumes, the interrupted trial included.
    """
    import optuna

    assert cfg.search is not None
    s = cfg.search
    root = Path(cfg.output.dir) / run_name(cfg, config_path)
    if overwrite and root.exists():
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(root, s)
    _requeue_interrupted(study)
    done = sum(1 for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL)
    echo(f"search: {root} ({done} of {s.trials} trials done, objective {s.objective})")
    try:
        study.optimize(lambda trial: _objective(trial, cfg, root, echo, progress), n_trials=max(0, s.trials - done))
    except KeyboardInterrupt:
        echo("search interrupted: the current trial saved a checkpoint; run the same command to resume")
        return None
    return _write_outputs(root, cfg, study, echo)


def _study(root: Path, s: SearchConfig) -> Any:
    import optuna

    sampler = (optuna.samplers.TPESampler(seed=s.seed) if s.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=s.seed))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0) if s.pruning \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{root / 'study.db'}", sampler=sampler,
                                pruner=pruner, direction="minimize" if s.objective in MINIMISED else "maximize",
                                load_if_exists=True)
    if not study.trials:
        for params in s.start_with:
            study.enqueue_trial(params)
    return study


def _requeue_interrupted(study: Any) -> None:
    """Trials a killed or interrupted process left behind are queued again with the same values.

    A kill leaves a trial RUNNING (it is marked failed first); Ctrl-C leaves it failed with the user
    attribute ``interrupted``. The re-run has the same values, hence the same sub-run folder, and resumes
    from that folder's last checkpoint. Queued numbers are remembered so nothing is queued twice.
    """
    import optuna

    requeued = set(study.user_attrs.get("requeued", []))
    for t in study.get_trials(deepcopy=False):
        stale = t.state == optuna.trial.TrialState.RUNNING
        interrupted = t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("interrupted")
        if (stale or interrupted) and t.number not in requeued:
            if stale:
                study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params)
            requeued.add(t.number)
    study.set_user_attr("requeued", sorted(requeued))


def _objective(trial: Any, cfg: RunConfig, root: Path, echo: Echo, progress: bool) -> float:
    import optuna

    from tuneforge.training.rundir import RunDir
    from tuneforge.training.runner import train

    params = suggest(trial, cfg.search.space)
    sub = apply_params(cfg, params)
    sub.output.dir, sub.output.name = str(root / "trials"), f"trial-{trial_id(params)}"
    sub.evaluation.auto = False
    run = RunDir(Path(sub.output.dir) / sub.output.name)
    trial.set_user_attr("run", str(run.root))
    echo(f"trial {trial.number}: {json.dumps(params)}")
    if run.status == "finished":  # the sampler repeated earlier values: reuse that run
        echo(f"trial {trial.number}: same values as an earlier trial, reusing {run.root}")
        pruned = _replay(trial, run, cfg.search.pruning)
    else:
        pruner = PruningCallback(trial, cfg.search.pruning)
        result = train(sub, echo=lambda m: echo(f"  {m}"), progress=progress, callbacks=[pruner])
        if result.interrupted:
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt
        pruned = pruner.pruned
    if pruned:
        echo(f"trial {trial.number}: pruned")
        raise optuna.TrialPruned()
    value = _value(cfg.search.objective, sub, run.root)
    echo(f"trial {trial.number}: {cfg.search.objective} = {value:.4f}")
    return value


def _replay(trial: Any, run: Any, pruning: bool) -> bool:
    """Report a finished run's eval losses to a new trial; whether the pruner stops it."""
    from tuneforge.training.report import read_log

    _, evals = read_log(run.log)
    for row in evals:
        trial.report(row["eval_loss"], row["step"])
        if pruning and trial.should_prune():
            return True
    return False


def _value(objective: str, sub: RunConfig, run_root: Path) -> float:
    """The trial's objective: its best eval loss, or a metric of the tuned model on the validation split."""
    from tuneforge.training.report import read_log

    _, evals = read_log(run_root / "train_log.jsonl")
    if objective == "eval_loss":
        if not evals:
            raise ConfigError("the search needs an eval loss", [Problem(
                "no evaluation ran in the trial", field="data.split",
                fix="give data.split a validation share, or data.eval_datasets")])
        return min(r["eval_loss"] for r in evals)
    from tuneforge.evaluation.evaluate import evaluate_engine
    from tuneforge.evaluation.sources import eval_items
    from tuneforge.inference.engine import Engine

    sub.evaluation.base = False
    family = "rouge" if objective.startswith("rouge") else objective  # the objective is measured even if unlisted
    if family not in sub.evaluation.metrics:
        sub.evaluation.metrics = [*sub.evaluation.metrics, family]
    items = eval_items(sub, "validation")
    engine = Engine.load(str(run_root))
    return evaluate_engine(sub, engine, items, None, run_root / "eval").metrics["tuned"][objective]


def _write_outputs(root: Path, cfg: RunConfig, study: Any, echo: Echo) -> SearchResult:
    import optuna

    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
             "run": t.user_attrs.get("run")} for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("no trial finished", [Problem(
            f"{len(rows)} trials, none complete", field="search", fix="widen search.space or set search.pruning: false")])
    best = study.best_trial
    best_cfg = apply_params(cfg, best.params)
    best_cfg.output.name = f"{run_name(cfg, None) if cfg.output.name else root.name}-best"
    path = root / "best_config.yaml"
    head = f"# best of {len(complete)} finished trials: {cfg.search.objective} = {best.value:.6g}\n"
    path.write_text(head + yaml.safe_dump(best_cfg.model_dump(mode="json", exclude={"search"}), sort_keys=False,
                                          allow_unicode=True), encoding="utf-8")
    plot = _plot(rows, root / "plots" / "trials.png", cfg.search.objective)
    report = _report(root, rows, best.params, best.value, cfg.search.objective, plot)
    echo(f"best trial {best.number}: {cfg.search.objective} = {best.value:.4f} {json.dumps(best.params)}")
    return SearchResult(root, best.params, best.value, path, rows, plot, report)


def _plot(rows: list[dict[str, Any]], path: Path, objective: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for state, marker in (("complete", "o"), ("pruned", "x")):
        pts = [(r["trial"], r["value"]) for r in rows if r["state"] == state and r["value"] is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=state)
    for r in rows:  # pruned trials have no final value: mark them on the axis
        if r["state"] == "pruned" and r["value"] is None:
            ax.axvline(r["trial"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _report(root: Path, rows: list[dict[str, Any]], best: dict[str, Any], value: float, objective: str,
            plot: Path) -> Path:
    lines = ["# Search report", "", f"best {objective}: {value:.6g} with {json.dumps(best)}", "",
             "| trial | state | value | params |", "|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['state']} | {_fmt(r['value'])} | {json.dumps(r['params'])} |" for r in rows]
    lines += ["", f"![trials]({plot.relative_to(root).as_posix()})", ""]
    path = root / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
