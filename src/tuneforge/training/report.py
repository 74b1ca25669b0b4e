"""Curves and the diagnosis rules of docs/evaluation.md, written to plots/ and report.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def read_log(path: Path, live: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train rows and eval rows of ``train_log.jsonl``.

    ``live``: the run may be writing the log right now, so a last line without its newline is left out.
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if live and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in rows if "loss" in r], [r for r in rows if "eval_loss" in r]


def plot_curves(log: Path, out_dir: Path, metrics: tuple[str, ...] = ()) -> list[Path]:
    """``loss.png`` and ``ppl.png`` with train and eval curves, plus ``alignment.png`` for a stage's metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = read_log(log)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    # a preference or reward loss is no language-model loss: its exp() is no perplexity
    curves = (("loss", "loss"),) if metrics else (("loss", "loss"), ("ppl", "perplexity"))
    for key, label in curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r["step"] for r in train], [r.get(key) for r in train], label=f"train {label}")
        if evals:
            ax.plot([r["step"] for r in evals], [r.get(f"eval_{key}") for r in evals], "o-", label=f"eval {label}")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if key == "ppl":
            ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    if metrics:
        paths.append(_plot_metrics(train, evals, metrics, out_dir / "alignment.png"))
    return paths


def _plot_metrics(train: list[dict[str, Any]], evals: list[dict[str, Any]], metrics: tuple[str, ...],
                  path: Path) -> Path:
    """One panel per stage metric (rewards/margins, accuracy, kl, ...), train and eval."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
    for ax, key in zip(axes[0], metrics, strict=True):
        rows = [r for r in train if r.get(key) is not None]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label="train")
        erows = [r for r in evals if r.get(f"eval_{key}") is not None]
        if erows:
            ax.plot([r["step"] for r in erows], [r[f"eval_{key}"] for r in erows], "o-", label="eval")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _quarters(values: list[float]) -> tuple[float, float] | None:
    """Mean of the first and of the last quarter of a series (None when too short to judge)."""
    if len(values) < 4:
        return None
    q = max(1, len(values) // 4)
    return float(np.mean(values[:q])), float(np.mean(values[-q:]))


@dataclass(frozen=True)
class Finding:
    """One diagnosis rule that fired: what the curves show, what to do, and which way that pushes the run.

    ``actions`` (lr_down, lr_up, longer, shorter) are what :func:`resolve` compares: a finding whose advice
    contradicts one of higher precedence keeps its fact and loses its advice.
    """

    rule: str
    fact: str
    advice: str = ""
    actions: frozenset[str] = frozenset()


#: Highest first (docs/evaluation.md, "Watching a run"): instability before overfitting before "train more".
PRECEDENCE = ("rising", "kl_exploding", "eval_overfitting", "near_zero", "not_converged", "flat", "margin_flat",
              "reward_flat", "accuracy_chance", "converged", "info")
OPPOSITE = {"lr_down": "lr_up", "lr_up": "lr_down", "longer": "shorter", "shorter": "longer"}


def resolve(findings: list[Finding]) -> list[str]:
    """Findings in precedence order, rendered; no two pieces of advice point opposite ways."""
    taken: set[str] = set()
    out = []
    for f in sorted(findings, key=lambda f: PRECEDENCE.index(f.rule)):
        if any(OPPOSITE[a] in taken for a in f.actions):
            out.append(f"{f.fact} (its usual remedy is left out: it contradicts the finding above, which comes first)")
            continue
        taken |= f.actions
        out.append(f"{f.fact}: {f.advice}" if f.advice else f.fact)
    return out


def loss_findings(train: list[dict[str, Any]], evals: list[dict[str, Any]]) -> list[Finding]:
    """The loss rules of docs/evaluation.md: one trend (rising, flat, not converged, converged), near 0, eval."""
    losses = np.array([r["loss"] for r in train if r.get("loss") is not None], dtype=float)
    if len(losses) < 4:
        return [Finding("info", "too few logged steps to judge the curves (lower training.logging_steps)")]
    q = max(1, len(losses) // 4)
    first, last, before_last = losses[:q].mean(), losses[-q:].mean(), losses[-2 * q:-q].mean()
    if last > first:
        out = [Finding("rising", f"loss is rising (first quarter {first:.3f} -> last quarter {last:.3f})",
                       "training is not converging; lower the learning rate and check the data",
                       frozenset({"lr_down"}))]
    elif first - last < 0.02 * first:
        out = [Finding("flat", f"loss barely moved ({first:.3f} -> {last:.3f})",
                       "raise the learning rate or train longer", frozenset({"lr_up", "longer"}))]
    elif before_last - last > 0.05 * before_last:
        out = [Finding("not_converged", f"loss is still falling at the end ({before_last:.3f} -> {last:.3f})",
                       "not converged yet; add epochs or data", frozenset({"longer"}))]
    else:
        out = [Finding("converged", "the loss fell and flattened in the second half: training converged normally")]
    if losses[: max(1, len(losses) // 3)].min() < 0.05:
        out.append(Finding("near_zero", "loss is near 0 (perplexity near 1) within the first third of training",
                           "overfitting; retrain with about a third of the epochs", frozenset({"shorter"})))
    if len(evals) >= 2:
        ev = np.array([r["eval_loss"] for r in evals], dtype=float)
        if ev[-1] > ev.min() * 1.1 and ev[-1] > last * 1.5:
            out.append(Finding("eval_overfitting", f"validation loss {ev[-1]:.3f} is well above training loss "
                               f"{last:.3f} and rising from its best {ev.min():.3f}",
                               "overfitting; raise weight decay, add data, stop early or keep the best checkpoint "
                               "(training.keep_best)", frozenset({"shorter"})))
    return out


def alignment_findings(train: list[dict[str, Any]], evals: list[dict[str, Any]]) -> list[Finding]:
    """Preference and RL curves: margin not growing, accuracy stuck at 0.5, KL exploding, reward flat."""
    out = []

    def series(key: str) -> list[float]:
        return [float(r[key]) for r in train if r.get(key) is not None]

    margins = _quarters(series("rewards/margins") or series("margin"))
    if margins and margins[1] <= margins[0] + 1e-3:
        out.append(Finding("margin_flat", f"the reward margin is not growing ({margins[0]:.3f} -> {margins[1]:.3f})",
                           "raise the learning rate or beta, train longer, or check that chosen and rejected "
                           "answers really differ", frozenset({"lr_up", "longer"})))
    accuracy = _quarters(series("rewards/accuracies") or series("accuracy"))
    if accuracy and abs(accuracy[1] - 0.5) <= 0.05:
        out.append(Finding("accuracy_chance", f"preference accuracy is stuck near 0.5 (last quarter {accuracy[1]:.2f})",
                           "the model cannot tell chosen from rejected; check the pairs (swapped or near-identical "
                           "answers)"))
    kl = series("kl")
    if len(kl) >= 4 and kl[-1] > max(1.0, 10 * max(abs(kl[0]), 0.01)):
        out.append(Finding("kl_exploding", f"KL against the reference is exploding ({kl[0]:.3f} -> {kl[-1]:.3f})",
                           "lower the learning rate or raise alignment.kl_coef / beta", frozenset({"lr_down"})))
    reward = _quarters(series("reward"))
    if reward and reward[1] <= reward[0]:
        out.append(Finding("reward_flat", f"the mean reward did not rise ({reward[0]:.3f} -> {reward[1]:.3f})",
                           "check the reward functions on a few answers, raise the learning rate or sample more "
                           "answers per prompt", frozenset({"lr_up"})))
    evaluation = [float(r["eval_accuracy"]) for r in evals if r.get("eval_accuracy") is not None]
    if evaluation:
        out.append(Finding("info", f"pairwise accuracy on the validation split: {evaluation[-1]:.3f}"))
    return out


def diagnose(train: list[dict[str, Any]], evals: list[dict[str, Any]], alignment: bool = False,
             surrogate_loss: bool = False) -> list[str]:
    """The rules of docs/evaluation.md ("Watching a run") applied to the curves, in precedence order.

    Args:
        train: Logged training rows.
        evals: Logged evaluation rows.
        alignment: Also judge the stage's preference / reward / KL curves.
        surrogate_loss: The loss is a policy-gradient surrogate (PPO, GRPO): its rules would mislead.
    """
    findings = [] if surrogate_loss else loss_findings(train, evals)
    findings += alignment_findings(train, evals) if alignment else []
    if not findings:
        return ["no problem found in the reward and KL curves (the loss of this stage is a policy-gradient "
                "surrogate and is not judged)"]
    return resolve(findings)


def write_report(root: Path, log: Path, summary: dict[str, Any], advice: list[str], plots: list[Path],
                 metrics: tuple[str, ...] = (), surrogate_loss: bool = False,
                 data_warnings: list[str] | None = None) -> Path:
    """``report.md``: the run summary, data warnings, filled hyper-parameters with reasons, diagnosis and plots.

    ``surrogate_loss`` (PPO, GRPO): the loss rules of docs/evaluation.md (rising, near 0 = overfitting) are about a
    likelihood and would mislead, so only the reward/KL rules apply.
    """
    train, evals = read_log(log)
    lines = ["# Training report", "", "## Summary", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items()]
    lines += ["", "## Data warnings (data_report.json)", ""]
    lines += [f"- {w}" for w in data_warnings or []] or ["- none"]
    lines += ["", "## Values chosen by advice (docs/advice.md)", ""]
    lines += [f"- {a}" for a in advice] or ["- none (everything was set in the config)"]
    findings = diagnose(train, evals, bool(metrics), surrogate_loss)
    lines += ["", "## Diagnosis (docs/evaluation.md)", ""] + [f"- {d}" for d in findings]
    if evals:
        lines += ["", "## Evaluation loss", "", "| step | eval_loss | eval_ppl |", "|---|---|---|"]
        lines += [f"| {r['step']} | {r['eval_loss']:.4f} | {r.get('eval_ppl')} |" for r in evals]
    lines += ["", "## Curves", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
