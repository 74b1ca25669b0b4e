"""Training runs started from the web UI: a written config, ``tuneforge train`` in its own process.

Everything about a launch lives in files under ``<workdir>/webui/`` (the config, the process log and a
small JSON record with the pid), so a browser reload, a second tab or a restarted UI finds the run
again; nothing is kept only in the UI's memory. Stop sends SIGINT, i.e. Ctrl-C, which makes the trainer
save a checkpoint; starting the same name again resumes it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config.load import load_config
from tuneforge.training.report import read_log
from tuneforge.training.rundir import STATE_FILE, RunDir
from tuneforge.utils.errors import ConfigError, Problem
from tuneforge.webui.paths import PathGuard

CLI = [sys.executable, "-m", "tuneforge.cli.main"]


@dataclass
class TrainForm:
    """The Train tab's fields (empty numbers mean: filled by the advice rules)."""

    model: str = "default"
    datasets: str = ""
    registry: list[str] | None = None  # "name @ path/to/dataset_info.json"
    stage: str = "sft"
    method: str = "lora"
    learning_rate: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation: int | None = None
    max_length: int = 512
    lora_rank: int | None = None
    run_name: str = "webui-run"
    placeholders: str = ""  # "name=Forge, author=Acme": values for {{name}}-style placeholders in the data


def parse_placeholders(text: str) -> tuple[dict[str, str], list[Problem]]:
    """``name=Forge, author=Acme`` as a dict, with a problem for each piece that is not KEY=VALUE."""
    values: dict[str, str] = {}
    problems = []
    for piece in [p.strip() for p in re.split(r"[,，]", text) if p.strip()]:
        key, sep, value = piece.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(f"{piece!r} is not KEY=VALUE", field="placeholders",
                                    fix="write e.g. name=Forge, author=Acme"))
        else:
            values[key.strip()] = value.strip()
    return values, problems


def _number(value: Any) -> Any:
    """Gradio's empty number is None or 0: both mean 'advised'."""
    return value if value not in (None, 0, "") else None


def build_config(form: TrainForm, guard: PathGuard, runs_dir: Path) -> dict[str, Any]:
    """A validated run config (as a dict ready for YAML) from the form; paths confined by ``guard``.

    Raises:
        ConfigError: every problem at once (bad paths, no data, invalid values).
    """
    problems: list[Problem] = []
    data: dict[str, Any] = {"datasets": [], "max_length": int(form.max_length)}
    for typed in [p for p in form.datasets.split(",") if p.strip()]:
        try:
            data["datasets"].append(str(guard.resolve(typed, "datasets")))
        except ConfigError as exc:
            problems += exc.problems
    infos = {entry.split(" @ ", 1)[1] for entry in form.registry or []}
    if len(infos) > 1:
        problems.append(Problem("registry entries come from more than one dataset_info.json", field="registry",
                                fix="pick entries of one dataset_info.json (or give the other files as paths)"))
    elif infos:
        data["dataset_info"] = str(guard.resolve(next(iter(infos)), "registry"))
        data["datasets"] += [entry.split(" @ ", 1)[0] for entry in form.registry or []]
    if not data["datasets"] and not problems:
        problems.append(Problem("no training data chosen", field="datasets",
                                fix="type one or more data file paths, or pick dataset_info.json entries"))
    placeholders, bad = parse_placeholders(form.placeholders)
    problems += bad
    if placeholders:
        data["placeholders"] = placeholders
    name = form.run_name.strip()
    if not re.fullmatch(r"[\w][\w.\-]*", name):
        problems.append(Problem(f"run name {name!r} is not a plain folder name", field="run_name",
                                fix="use letters, digits, '-', '_' and '.', e.g. identity-lora-2"))
    try:
        model = guard.model(form.model)
    except ConfigError as exc:
        problems += exc.problems
        model = "default"
    if problems:
        raise ConfigError("the form has problems", problems)
    training = {"stage": form.stage, "learning_rate": _number(form.learning_rate), "epochs": _number(form.epochs),
                "max_steps": _number(form.max_steps), "batch_size": _number(form.batch_size),
                "gradient_accumulation": _number(form.gradient_accumulation)}
    method: dict[str, Any] = {"name": form.method}
    if _number(form.lora_rank):
        method["lora"] = {"rank": int(form.lora_rank)}
    cfg = {"model": {"name_or_path": model}, "data": data, "method": method,
           "training": {k: v for k, v in training.items() if v is not None},
           "output": {"dir": str(runs_dir), "name": name}}
    load_config(base=cfg)  # raises ConfigError naming each invalid field
    return cfg


def form_from_config(cfg: dict[str, Any], workdir: Path) -> TrainForm:
    """The form that :func:`build_config` turns into ``cfg`` (paths shown relative to the workdir)."""
    def rel(path: str) -> str:  # as the UI lists them: relative to the workdir (data folders with "..")
        return os.path.relpath(path, workdir) if Path(path).is_absolute() else path

    data, training = cfg.get("data", {}), cfg.get("training", {})
    paths = [d for d in data.get("datasets", []) if isinstance(d, str) and ("/" in d or "." in d)]
    names = [d for d in data.get("datasets", []) if isinstance(d, str) and d not in paths]
    info = rel(data["dataset_info"]) if data.get("dataset_info") else None
    return TrainForm(model=rel(cfg.get("model", {}).get("name_or_path", "default")),
                     datasets=", ".join(rel(d) for d in paths),
                     registry=[f"{n} @ {info}" for n in names] if info else [],
                     stage=training.get("stage", "sft"), method=cfg.get("method", {}).get("name", "lora"),
                     learning_rate=training.get("learning_rate"), epochs=training.get("epochs"),
                     max_steps=training.get("max_steps"), batch_size=training.get("batch_size"),
                     gradient_accumulation=training.get("gradient_accumulation"),
                     max_length=data.get("max_length", 512),
                     lora_rank=cfg.get("method", {}).get("lora", {}).get("rank"),
                     run_name=cfg.get("output", {}).get("name", "webui-run"),
                     placeholders=", ".join(f"{k}={v}" for k, v in data.get("placeholders", {}).items()))


@dataclass
class Launch:
    """The record of one UI-started training process (``webui/<name>.json``)."""

    name: str
    pid: int
    config: str
    log: str
    run_dir: str
    started: float


class RunManager:
    """Starts, stops and finds training runs of one working directory."""

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir).resolve()
        self.ui_dir = self.workdir / "webui"
        self.runs_dir = self.workdir / "runs"
        self._children: dict[int, subprocess.Popen] = {}  # reaped when they end (no zombies)

    def write_config(self, cfg: dict[str, Any], name: str) -> Path:
        """The config as ``webui/<name>.yaml`` (also what Recommend/Estimate/Preview read)."""
        self.ui_dir.mkdir(parents=True, exist_ok=True)
        path = self.ui_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    def start(self, cfg: dict[str, Any]) -> Launch:
        """Launch ``tuneforge train`` on the config; refuses a name that is already running."""
        name = cfg["output"]["name"]
        if self.is_running(name):
            raise ConfigError("already running", [Problem(f"{name} is running", field="run_name",
                                                          fix="stop it first, or choose another run name")])
        run = RunDir(Path(cfg["output"]["dir"]) / name)
        if run.status == "finished":
            raise ConfigError("a finished run has this name", [Problem(
                f"{name} is finished; the UI never overwrites a finished run", file=str(run.root),
                field="run_name", fix="choose another run name (or delete the run folder yourself)")])
        config = self.write_config(cfg, name)
        log = self.ui_dir / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} tuneforge train {config} ===\n".encode())
            out.flush()
            proc = subprocess.Popen([*CLI, "train", str(config), "--no-progress"], cwd=self.workdir, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"})
        self._children[proc.pid] = proc
        launch = Launch(name, proc.pid, str(config), str(log), str(Path(cfg["output"]["dir"]) / name), time.time())
        (self.ui_dir / f"{name}.json").write_text(json.dumps(asdict(launch), indent=2), encoding="utf-8")
        return launch

    def launch(self, name: str) -> Launch | None:
        """The record of the last launch of ``name``, if the UI started it."""
        path = self.ui_dir / f"{name}.json"
        return Launch(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None

    def is_running(self, name: str) -> bool:
        """Whether the launched process of ``name`` is alive."""
        launch = self.launch(name)
        return bool(launch) and self._alive(launch.pid)

    def stop(self, name: str) -> bool:
        """Send Ctrl-C (SIGINT) to a running launch; False when it is not running."""
        launch = self.launch(name)
        if not launch or not self._alive(launch.pid):
            return False
        os.kill(launch.pid, signal.SIGINT)
        return True

    def status(self, name: str) -> str:
        """running, finished, interrupted, failed, or unknown."""
        if self.is_running(name):
            return "running"
        status = RunDir(self.run_dir(name)).status
        if status in ("finished", "interrupted"):
            return status
        return "failed" if self.launch(name) else (status or "unknown")

    def run_dir(self, name: str) -> Path:
        """The run folder of ``name`` (where its launch put it, else ``runs/<name>``)."""
        launch = self.launch(name)
        return Path(launch.run_dir) if launch else self.runs_dir / name

    def names(self) -> list[str]:
        """UI launches (newest first), then other run folders under ``runs/``."""
        launched = sorted(self.ui_dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        names = [p.stem for p in launched]
        if self.runs_dir.is_dir():
            names += sorted(p.parent.name for p in self.runs_dir.glob(f"*/{STATE_FILE}"))
        return list(dict.fromkeys(names))

    def current(self) -> str | None:
        """The run to show after a (re)load: a running launch, else the newest one."""
        names = self.names()
        return next((n for n in names if self.is_running(n)), names[0] if names else None)

    def form(self, name: str) -> TrainForm | None:
        """The Train form of a UI launch, read back from its config."""
        launch = self.launch(name)
        if not launch or not Path(launch.config).is_file():
            return None
        return form_from_config(yaml.safe_load(Path(launch.config).read_text(encoding="utf-8")), self.workdir)

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines of the launch's process log ('' when the UI did not start it)."""
        launch = self.launch(name)
        if not launch or not Path(launch.log).is_file():
            return ""
        return "\n".join(Path(launch.log).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def curves(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """Loss and perplexity points from the run's ``train_log.jsonl``, by series (train / eval)."""
        train, evals = read_log(RunDir(self.run_dir(name)).log, live=True)
        return {metric: [{"step": r["step"], "value": r[key], "series": series}
                         for rows, key, series in ((train, metric, "train"), (evals, f"eval_{metric}", "eval"))
                         for r in rows if isinstance(r.get(key), int | float)]
                for metric in ("loss", "ppl")}

    def _alive(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return stat.split(") ", 1)[1][:1] != "Z" and b"tuneforge" in cmdline
