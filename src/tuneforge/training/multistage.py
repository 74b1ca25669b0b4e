"""Multi-stage incremental training (docs/advice.md): each stage builds on the previous one's result.

Stage *k* starts from stage *k-1*'s model (adapters are merged and verified by export first), mixes in
``replay_ratio`` x its training-set size of earlier stages' data, and uses half the previous stage's
learning rate unless it sets its own. Stages live in ``<run>/NN-name/``; the top-level report shows
every stage's curves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config.catalog import method_spec
from tuneforge.config.schema import RunConfig
from tuneforge.training.rundir import run_name
from tuneforge.training.runner import Echo, TrainResult, train
from tuneforge.utils.errors import ConfigError, Problem


def stage_configs(cfg: RunConfig, root: Path) -> list[RunConfig]:
    """The full config of every stage (before the learning rate and start model are known)."""
    base = cfg.model_dump(mode="json", exclude={"stages"})
    out = []
    for i, stage in enumerate(cfg.stages):
        merged = {**base}
        for section in ("data", "template", "method", "training", "alignment"):
            merged[section] = {**base[section], **getattr(stage, section)}
        merged["output"] = {**base["output"], "dir": str(root), "name": f"{i + 1:02d}-{stage.name}"}
        out.append(RunConfig.model_validate(merged))
    return out


def train_stages(cfg: RunConfig, config_path: str | None = None, overwrite: bool = False, echo: Echo = print,
                 progress: bool = True) -> list[TrainResult]:
    """Run every stage in order; a finished stage is kept (re-running resumes at the first unfinished one)."""
    from tuneforge.export import export_run

    root = Path(cfg.output.dir) / run_name(cfg, config_path)
    results: list[TrainResult] = []
    earlier: list[tuple[str, list[Any]]] = []  # (stage, datasets) of the stages done so far
    configs = stage_configs(cfg, root)
    _require_mergeable_starts(configs)
    for i, (stage, scfg) in enumerate(zip(cfg.stages, configs, strict=True)):
        policy = _last_policy(results)
        if policy is not None:
            start = _start_model(policy, export_run, echo)
            scfg = _follow(scfg, stage.replay_ratio, earlier, start, policy)
        scfg = _with_reward_model(scfg, results)
        echo(f"== stage {i + 1}/{len(cfg.stages)}: {stage.name} ({scfg.training.stage})")
        result = _train_or_reuse(scfg, overwrite and i == 0, echo, progress)
        results.append(result)
        earlier.append((scfg.training.stage, scfg.data.datasets))
    _write_summary(root, results)
    return results


def _require_mergeable_starts(configs: list[RunConfig]) -> None:
    """Every policy a later stage starts from is merged first: its method must merge (checked before training)."""
    policies = [(i, c) for i, c in enumerate(configs) if c.training.stage != "rm"]
    problems = [Problem(f"stage {i + 1} trains method {c.method.name}, which cannot be merged into its base "
                        f"({method_spec(c.method.name).merge_blocker}), and a later stage starts from it",
                        field=f"stages[{i}].method.name", fix="train the earlier stages with a method that merges "
                        "(lora, dora, ia3, freeze, full), or use the unmergeable method in the last stage only")
                for i, c in policies[:-1] if not method_spec(c.method.name).merges]
    if problems:
        raise ConfigError("a later stage cannot start from an unmergeable adapter", problems)


def _stage_of(result: TrainResult) -> str:
    return str(_meta(result).get("stage", "sft"))


def _meta(result: TrainResult) -> dict[str, Any]:
    path = result.run.model / "tuneforge_training.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _last_policy(results: list[TrainResult]) -> TrainResult | None:
    """The latest stage whose model generates text (a reward model is no starting point for the next stage)."""
    return next((r for r in reversed(results) if _stage_of(r) != "rm"), None)


def _with_reward_model(cfg: RunConfig, results: list[TrainResult]) -> RunConfig:
    """ppo (and grpo's reward_model reward) use the latest rm stage unless alignment.reward_model is set."""
    wants = cfg.training.stage == "ppo" or "reward_model" in cfg.alignment.rewards
    rm = next((r for r in reversed(results) if _stage_of(r) == "rm"), None)
    if not wants or cfg.alignment.reward_model or rm is None:
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.alignment.reward_model = str(rm.run.root)
    return cfg


def _start_model(prev: TrainResult, export_run: Any, echo: Echo) -> str:
    meta = json.loads((prev.run.model / "tuneforge_training.json").read_text(encoding="utf-8"))
    if not meta["adapter"]:
        return str(prev.run.model)
    merged = prev.run.root / "merged"
    if not (merged / "tuneforge_training.json").is_file():
        result = export_run(str(prev.run.root), str(merged), overwrite=True)
        echo(f"merged the previous stage's adapter (max logit difference {result.verification.max_logit_diff:.1e})")
    return str(merged)


def _learning_rate(prev: TrainResult) -> float:
    resolved = yaml.safe_load((prev.run.root / "config.yaml").read_text(encoding="utf-8"))
    return float(resolved["training"]["learning_rate"])


def _follow(cfg: RunConfig, replay_ratio: float, earlier: list[tuple[str, list[Any]]], start: str,
            prev: TrainResult) -> RunConfig:
    """Start from the previous policy; replay and the halved rate apply between stages of the same kind.

    sft -> dpo neither replays SFT records into preference training (another data kind) nor inherits the
    SFT learning rate (advice picks the preference rate).
    """
    cfg = cfg.model_copy(deep=True)
    cfg.model.name_or_path = start
    same = [d for stage, datasets in earlier if stage == cfg.training.stage for d in datasets]
    if replay_ratio > 0 and same:
        cfg.data.replay = [*cfg.data.replay, *same]
        cfg.data.replay_ratio = replay_ratio
    if cfg.training.learning_rate is None and _stage_of(prev) == cfg.training.stage:
        cfg.training.learning_rate = _learning_rate(prev) / 2
    return cfg


def _train_or_reuse(cfg: RunConfig, overwrite: bool, echo: Echo, progress: bool) -> TrainResult:
    from tuneforge.training.rundir import RunDir

    run = RunDir(Path(cfg.output.dir) / (cfg.output.name or "run"))
    if run.status == "finished" and not overwrite:
        echo(f"stage already finished: {run.root}")
        return TrainResult(run, False, int(run.state().get("step", 0)), None, run.root / "report.md")
    return train(cfg, None, overwrite, echo, progress)


def _write_summary(root: Path, results: list[TrainResult]) -> None:
    lines = ["# Multi-stage training report", ""]
    for r in results:
        rel = r.run.root.relative_to(root)
        lines += [f"## {rel}", "", f"- report: [{rel}/report.md]({rel}/report.md)",
                  f"![loss]({rel}/plots/loss.png)", ""]
    (root / "report.md").write_text("\n".join(lines), encoding="utf-8")
