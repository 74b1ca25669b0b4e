"""The diagnosis rules of report.md on synthetic curves, each alone and in precedence (docs/evaluation.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tuneforge.training.report import PRECEDENCE, diagnose, loss_findings

N = 40


def _train(losses: list[float], **series: list[float]) -> list[dict[str, Any]]:
    return [{"step": i + 1, "loss": v, **{k.replace("__", "/"): s[i] for k, s in series.items()}}
            for i, v in enumerate(losses)]


def _evals(values: list[float]) -> list[dict[str, Any]]:
    return [{"step": (i + 1) * 10, "eval_loss": v} for i, v in enumerate(values)]


RISING = [1.0 + 0.02 * i for i in range(N)]
FLAT = [2.0 + 0.001 * (i % 3) for i in range(N)]
FALLING = [3.0 - 0.06 * i for i in range(N)]  # still falling fast at the end
CONVERGED = [2.0 * 0.85 ** i + 0.5 for i in range(20)] + [0.5 + 2.0 * 0.85 ** 20] * 20
NEAR_ZERO = [0.01] * N


@pytest.mark.parametrize(("losses", "evals", "rule", "says"), [
    (RISING, [], "rising", "lower the learning rate"),
    (FLAT, [], "flat", "raise the learning rate or train longer"),
    (FALLING, [], "not_converged", "add epochs or data"),
    (CONVERGED, [], "converged", "converged normally"),
    (CONVERGED, [0.8, 0.7, 1.2, 1.6], "eval_overfitting", "stop early"),
    (NEAR_ZERO, [], "near_zero", "a third of the epochs"),
])
def test_each_rule_fires_on_its_curve(losses: list[float], evals: list[float], rule: str, says: str) -> None:
    found = loss_findings(_train(losses), _evals(evals))
    assert rule in {f.rule for f in found}
    assert says in " ".join(diagnose(_train(losses), _evals(evals)))


def test_healthy_curve_fires_nothing_else() -> None:
    assert [f.rule for f in loss_findings(_train(CONVERGED), _evals([1.0, 0.8, 0.7, 0.69]))] == ["converged"]


def _directions(lines: list[str]) -> set[str]:
    text = " ".join(lines)
    return {d for d, words in {"up": ("raise the learning rate", "train longer", "add epochs"),
                               "down": ("lower the learning rate", "a third of the epochs", "stop early")}.items()
            if any(w in text for w in words)}


def test_rising_loss_beats_a_flat_margin() -> None:
    # the DPO example of issue 15: loss up, margin down; the report once said both lower and raise the rate
    train = _train(RISING, rewards__margins=[-0.001 * i for i in range(N)])
    lines = diagnose(train, [], alignment=True)
    assert lines[0].startswith("loss is rising") and _directions(lines) == {"down"}
    assert any(line.startswith("the reward margin is not growing") and "left out" in line for line in lines)


def test_overfitting_beats_not_converged() -> None:
    falling_to_zero = [0.04 - 0.001 * i for i in range(N)]  # near 0 in the first third, still falling
    lines = diagnose(_train(falling_to_zero), [])
    assert "near 0" in lines[0] and _directions(lines) == {"down"}
    assert "still falling" in lines[1] and "left out" in lines[1]


def test_kl_explosion_beats_a_flat_reward() -> None:
    train = _train([0.0] * 8, kl=[0.01] * 6 + [5.0, 9.0], reward=[1.0] * 8)
    lines = diagnose(train, [], alignment=True, surrogate_loss=True)
    assert "KL" in lines[0] and _directions(lines) == {"down"}


@pytest.mark.parametrize("losses", [RISING, FLAT, FALLING, CONVERGED, NEAR_ZERO])
@pytest.mark.parametrize("margins", [None, [0.0] * N, [0.05 * i for i in range(N)]])
@pytest.mark.parametrize("evals", [[], [0.8, 0.7, 1.2, 1.6]])
def test_no_report_advises_both_ways(losses: list[float], margins: list[float] | None, evals: list[float]) -> None:
    train = _train(losses, **({"rewards__margins": margins} if margins else {}))
    lines = diagnose(train, _evals(evals), alignment=margins is not None)
    assert len(_directions(lines)) <= 1, lines


def test_every_rule_has_a_rank() -> None:
    from tuneforge.training.report import alignment_findings

    train = _train(RISING, rewards__margins=[0.0] * N, rewards__accuracies=[0.5] * N, kl=[0.01] * 30 + [9.0] * 10,
                   reward=[1.0] * N)
    rules = {f.rule for f in loss_findings(train, _evals([0.1, 0.1, 5.0])) + alignment_findings(train, [])}
    assert rules <= set(PRECEDENCE) and len(rules) >= 6
