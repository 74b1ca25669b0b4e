"""Experiment trackers (``output.report_to``): tensorboard, wandb, swanlab and mlflow.

Each tracker gets the resolved config when training starts, every training and validation log line
(through transformers' own callback for it) and, after training, the held-out evaluation's metrics.
tuneforge opens each tracker's run itself, before transformers' callback would, so that it can choose
where it writes: wandb and swanlab run offline into ``<output.dir>/wandb`` and ``<output.dir>/swanlog``
unless the user configured them (a mode or API key in the environment, or a saved login), and mlflow
logs to ``<output.dir>/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set. transformers' callbacks then use
the open run (docs/evaluation.md, "Experiment trackers").
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneforge.utils.errors import ConfigError, Problem
from tuneforge.utils.names import Registry


class Tracker:
    """One tracker: opens its run, hands transformers' callback to the trainer, logs the summary, closes.

    Attributes:
        name: The ``output.report_to`` value.
        package: The PyPI package it needs (None: always installed).
    """

    name = ""
    package: str | None = None

    def start(self, run_root: Path, output_dir: Path, project: str, config: dict[str, Any]) -> None:
        """Open this run's tracker run with the resolved ``config``."""

    def callback(self, run_root: Path) -> Any:
        """transformers' ``TrainerCallback`` that logs the training and validation lines."""
        raise NotImplementedError

    def log_summary(self, metrics: dict[str, float]) -> None:
        """The held-out evaluation's metrics, after training."""

    def finish(self, ok: bool) -> None:
        """Close the run (``ok`` False: the training failed)."""

    @property
    def where(self) -> str:
        """Where the run was written, for the run log."""
        return ""


class TensorBoard(Tracker):
    """Event files in ``<run>/tensorboard`` (always available: tensorboard is a dependency)."""

    name = "tensorboard"

    def start(self, run_root: Path, output_dir: Path, project: str, config: dict[str, Any]) -> None:
        self.dir = run_root / "tensorboard"
        self.config = config

    def callback(self, run_root: Path) -> Any:
        import yaml
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        class _KeptOpen(TensorBoardCallback):
            """transformers closes its writer when training ends; the held-out metrics still go into the same file."""

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if self.tb_writer:
                    self.tb_writer.flush()

        self.writer = SummaryWriter(str(self.dir))
        self.writer.add_text("tuneforge_config", "```yaml\n" + yaml.safe_dump(self.config, sort_keys=False) + "```")
        return _KeptOpen(tb_writer=self.writer)

    def log_summary(self, metrics: dict[str, float]) -> None:
        writer = getattr(self, "writer", None)
        if writer is None:
            return
        for key, value in metrics.items():
            writer.add_scalar(key, value)
        writer.flush()

    def finish(self, ok: bool) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            self.writer = None

    @property
    def where(self) -> str:
        return str(self.dir)


class Wandb(Tracker):
    """Weights & Biases: offline into ``<output.dir>/wandb`` unless configured (``wandb sync`` uploads it)."""

    name = "wandb"
    package = "wandb"

    def start(self, run_root: Path, output_dir: Path, project: str, config: dict[str, Any]) -> None:
        import wandb

        mode = None if _wandb_configured() else "offline"
        output_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", project), name=run_root.name,
                              dir=str(output_dir), mode=mode, config={"tuneforge": config}, reinit="finish_previous",
                              settings=wandb.Settings(console="off", silent=True))
        self.dir = self.run.dir

    def callback(self, run_root: Path) -> Any:
        from transformers.integrations import WandbCallback

        return WandbCallback()

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def finish(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)

    @property
    def where(self) -> str:
        return str(Path(self.dir).parent)


class SwanLab(Tracker):
    """SwanLab: offline into ``<output.dir>/swanlog`` unless configured (``swanlab sync`` uploads it)."""

    name = "swanlab"
    package = "swanlab"

    def start(self, run_root: Path, output_dir: Path, project: str, config: dict[str, Any]) -> None:
        import swanlab

        configured = _swanlab_configured()
        logdir = os.environ.get("SWANLAB_LOG_DIR") or str(output_dir / "swanlog")
        self.run = swanlab.init(project=os.environ.get("SWANLAB_PROJECT", project), experiment_name=run_root.name,
                                config={"tuneforge": config}, logdir=logdir,
                                **({} if configured else {"mode": "offline"}))
        self.dir = logdir

    def callback(self, run_root: Path) -> Any:
        from transformers.integrations import SwanLabCallback

        return SwanLabCallback()

    def log_summary(self, metrics: dict[str, float]) -> None:
        import swanlab

        swanlab.log(metrics)

    def finish(self, ok: bool) -> None:
        import swanlab

        swanlab.finish(state="success" if ok else "crashed")

    @property
    def where(self) -> str:
        return self.dir


class MLflow(Tracker):
    """MLflow: a local ``<output.dir>/mlruns`` file store unless ``MLFLOW_TRACKING_URI`` is set."""

    name = "mlflow"
    package = "mlflow"

    def start(self, run_root: Path, output_dir: Path, project: str, config: dict[str, Any]) -> None:
        import mlflow

        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"file:{(output_dir / 'mlruns').resolve()}"
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # mlflow 3.x keeps the file store in maintenance mode behind this switch; a database backend
            # needs the full mlflow server package
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(self.uri)  # per run: mlflow's URI is process-wide state
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", project))
        self.run = mlflow.start_run(run_name=run_root.name)
        mlflow.log_dict(config, "tuneforge_config.json")
        mlflow.log_params({f"tuneforge.{k}": v for k, v in _flatten(config).items() if len(str(v)) <= 250})

    def callback(self, run_root: Path) -> Any:
        from transformers.integrations import MLflowCallback

        return MLflowCallback()

    def log_summary(self, metrics: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics({_mlflow_key(k): v for k, v in metrics.items()}, run_id=self.run.info.run_id)

    def finish(self, ok: bool) -> None:
        import mlflow

        mlflow.flush_async_logging()  # transformers' callback logs without waiting
        mlflow.end_run("FINISHED" if ok else "FAILED")

    @property
    def where(self) -> str:
        return f"{self.uri} (run {self.run.info.run_id})"


TRACKERS: Registry[Tracker] = Registry("tracker")
for _cls in (TensorBoard, Wandb, SwanLab, MLflow):
    TRACKERS.register(_cls.name, _cls)


def open_trackers(names: list[str], run_root: Path, output_dir: Path, project: str,
                  config: dict[str, Any]) -> list[Tracker]:
    """Start every tracker of ``output.report_to``; all missing packages are reported at once, before any starts."""
    missing = [TRACKERS.get(n) for n in names if TRACKERS.get(n).package
               and importlib.util.find_spec(TRACKERS.get(n).package) is None]
    if missing:
        raise ConfigError("experiment tracker not installed", [Problem(
            f"output.report_to names {t.name}, but the package {t.package!r} is not installed", field="output.report_to",
            fix=f"pip install 'tuneforge[trackers]' (or pip install {t.package}), or remove {t.name}") for t in missing])
    opened: list[Tracker] = []
    for name in names:
        tracker = TRACKERS.get(name)()
        tracker.start(run_root, output_dir, project, config)
        opened.append(tracker)
    return opened


def summary_metrics(evaluation: Any) -> dict[str, float]:
    """The held-out evaluation as flat ``test/<model>/<metric>`` numbers (None values left out)."""
    metrics = getattr(evaluation, "metrics", None) or {}
    return {f"test/{label}/{name}": float(value) for label, scores in metrics.items()
            for name, value in (scores or {}).items() if isinstance(value, (int, float))}


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


def _mlflow_key(key: str) -> str:
    """mlflow accepts letters, digits and ``_-. :/`` in metric names."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in key)


def _wandb_configured() -> bool:
    """A mode or key in the environment, or a login saved by ``wandb login`` (~/.netrc)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")


def _swanlab_configured() -> bool:
    """A mode or key in the environment, or a login saved by ``swanlab login``."""
    if os.environ.get("SWANLAB_MODE") or os.environ.get("SWANLAB_API_KEY"):
        return True
    saved = Path(os.environ.get("SWANLAB_ROOT") or os.environ.get("SWANLAB_SAVE_DIR") or Path.home() / ".swanlab")
    return (saved / ".netrc").is_file()


def close_all(trackers: list[Tracker], ok: bool) -> Iterator[str]:
    """Finish every tracker; yields a line per tracker saying where its run is."""
    for tracker in trackers:
        tracker.finish(ok)
        yield f"{tracker.name}: {tracker.where}" if tracker.where else tracker.name
