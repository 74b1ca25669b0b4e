"""GRPO reward functions, PPO's advantage estimate and KTO's default weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuneforge.config.schema import RunConfig
from tuneforge.training.rewards import build_rewards
from tuneforge.training.stages.kto import balanced_weights, unpaired
from tuneforge.training.stages.ppo import GAMMA, LAM, gae
from tuneforge.utils.errors import ConfigError


def _cfg(**alignment: object) -> RunConfig:
    return RunConfig.model_validate({"data": {"datasets": ["x.json"]}, "alignment": alignment})


def test_exact_answer_takes_the_last_number() -> None:
    (fn,) = build_rewards(_cfg(rewards=["exact_answer"]))
    got = fn(["p"] * 4, ["3 + 4 = 7.", "The answer is 8", "seven", "7 apples, not 6"], answer=["7", "7", "7", "7"])
    assert got == [1.0, 0.0, 0.0, 0.0]
    assert fn.__name__ == "exact_answer"


def test_format_and_length_rewards() -> None:
    fmt, length = build_rewards(_cfg(rewards=["format", "length"], target_length=4))
    assert fmt(["p", "p"], ["it is 12", "no number"]) == [1.0, 0.0]
    assert length(["p"] * 3, ["", "", ""], completion_ids=[[1] * 3, [1] * 6, [1] * 20]) == [0.0, -0.5, -1.0]


def test_bad_rewards_are_reported_together() -> None:
    with pytest.raises(ConfigError) as err:
        build_rewards(_cfg(rewards=["exact", "length"], reward_weights=[1.0]))
    text = str(err.value.problems)
    assert "unknown reward 'exact'" in text and "1 reward_weights for 2 rewards" in text
    with pytest.raises(ConfigError, match="cannot load a reward function"):
        build_rewards(_cfg(rewards=["no_such_module:f"]))
    with pytest.raises(ConfigError, match="no reward model"):
        build_rewards(_cfg(rewards=["reward_model"]))


def test_gae_matches_a_hand_computed_case() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 0.0]])  # 0 after the last answer token
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask)
    d2 = 1.0 - 0.1
    d1 = 0.0 + GAMMA * 0.1 - 0.2
    d0 = 0.0 + GAMMA * 0.2 - 0.5
    a2, a1 = d2, d1 + GAMMA * LAM * d2
    a0 = d0 + GAMMA * LAM * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert ret[0, :3].tolist() == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])


def test_kto_weights_balance_the_counts() -> None:
    assert balanced_weights([True] * 3 + [False] * 9) == (3.0, 1.0)
    assert balanced_weights([True] * 8 + [False] * 2) == (1.0, 4.0)
    cols = unpaired({"prompt_ids": [[1], [2]], "chosen_ids": [[3], [4]], "rejected_ids": [[5], [6]]})
    assert cols == {"prompt_ids": [[1], [2], [1], [2]], "completion_ids": [[3], [4], [5], [6]],
                    "label": [True, True, False, False]}


def test_kto_plans_its_steps_on_the_rows_it_trains_two_per_pair() -> None:
    """A pair is two KTO rows: the advice's step count (and its minimum-steps rule) must see 2 x pairs."""
    from tuneforge.data.processors.base import Processed
    from tuneforge.training.stages.base import Stage
    from tuneforge.training.stages.kto import KtoStage

    pairs = {"prompt_ids": [[1]] * 5, "chosen_ids": [[3]] * 5, "rejected_ids": [[5]] * 5}
    labelled = {"prompt_ids": [[1]] * 5, "completion_ids": [[3]] * 5, "label": [True] * 5}
    assert KtoStage().train_rows(Processed(pairs, None)) == 10
    assert KtoStage().train_rows(Processed(labelled, None)) == 5
    assert Stage().train_rows(Processed(pairs, None)) == 5
    # evaluations are spaced on the validation rows the trainer reads: two per pair as well
    assert KtoStage().planned_rows(Processed(pairs, None), Processed(pairs, None)) == (10, 10)
    assert KtoStage().planned_rows(Processed(pairs, None), None) == (10, 0)
    assert Stage().planned_rows(Processed(pairs, None), Processed(labelled, None)) == (5, 5)


def test_alignment_diagnosis_rules() -> None:
    from tuneforge.training.report import alignment_findings, resolve

    flat = [{"step": i, "rewards/margins": 0.01, "rewards/accuracies": 0.5, "kl": 0.01 * (1 + 100 * (i > 6)),
             "reward": 1.0 - 0.01 * i} for i in range(8)]
    found = " ".join(resolve(alignment_findings(flat, [{"step": 8, "eval_accuracy": 0.55}])))
    for text in ("margin is not growing", "stuck near 0.5", "KL against the reference is exploding",
                 "mean reward did not rise", "pairwise accuracy on the validation split: 0.550"):
        assert text in found, text
    healthy = [{"step": i, "rewards/margins": 0.1 * i, "rewards/accuracies": 0.5 + 0.05 * i, "kl": 0.01 * i,
                "reward": 0.1 * i} for i in range(8)]
    assert alignment_findings(healthy, []) == []


def test_surrogate_losses_are_not_judged_like_likelihoods(tmp_path: Path) -> None:
    # PPO/GRPO losses near 0 from the start are normal; the SFT rule would call it overfitting.
    from tuneforge.training.report import write_report

    rows = [{"step": i, "loss": 0.01, "reward": 0.1 * i, "kl": 0.01} for i in range(1, 9)]
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    as_sft = write_report(tmp_path, log, {}, [], [], ("reward", "kl")).read_text(encoding="utf-8")
    assert "overfitting" in as_sft
    as_rl = write_report(tmp_path, log, {}, [], [], ("reward", "kl"), surrogate_loss=True).read_text(encoding="utf-8")
    assert "overfitting" not in as_rl and "loss barely moved" not in as_rl
    assert "no problem found in the reward and KL curves" in as_rl
    rows[-1]["reward"] = rows[-2]["reward"] = -1.0  # a falling reward is still reported
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert "mean reward did not rise" in write_report(tmp_path, log, {}, [], [], ("reward",),
                                                      surrogate_loss=True).read_text(encoding="utf-8")
