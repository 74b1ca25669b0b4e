"""LLM-as-judge: robust score parsing; unreadable replies and failed requests are counted, never fatal."""

from __future__ import annotations

import pytest

from tuneforge.config.schema import JudgeConfig
from tuneforge.evaluation.judge import LocalBackend, judge, judge_prompt, parse_scores

DIMS = ["correctness", "relevance", "fluency"]


@pytest.mark.parametrize("reply", [
    "correctness: 8\nrelevance: 7\nfluency: 9",
    "**Correctness**: 8/10\n**Relevance** = 7 / 10\nFluency：9",
    'Here you go: {"correctness": 8, "relevance": 7, "fluency": 9}',
])
def test_scores_are_read_from_common_reply_shapes(reply: str) -> None:
    assert parse_scores(reply, DIMS) == {"correctness": 8, "relevance": 7, "fluency": 9}


@pytest.mark.parametrize("reply", ["", "Great answer!", "correctness: 8\nrelevance: 7", "correctness: 80\n"
                                   "relevance: 7\nfluency: 9"])
def test_missing_or_out_of_range_scores_are_unreadable(reply: str) -> None:
    assert parse_scores(reply, DIMS) is None


class _Canned:
    def __init__(self, replies: list[object]) -> None:
        self.replies_ = replies
        self.prompts: list[str] = []

    def replies(self, prompts: list[str]) -> list[object]:
        self.prompts += prompts
        return self.replies_


def test_malformed_replies_and_failures_are_counted_not_fatal() -> None:
    backend = _Canned(["correctness: 9\nrelevance: 9\nfluency: 9", "I cannot grade this.", ConnectionError("down"),
                       "correctness: 5\nrelevance: 3\nfluency: 4"])
    result = judge(JudgeConfig(), ["q"] * 4, ["r"] * 4, ["a"] * 4, backend=backend)
    summary = result.to_dict()
    assert summary["n"] == 4 and summary["unparsed"] == 2 and "ConnectionError: down" in summary["errors"][0]
    assert summary["scores"]["correctness"] == 7 and summary["scores"]["overall"] == pytest.approx((7 + 6 + 6.5) / 3)
    assert "Reference answer:\nr" in backend.prompts[0] and "- fluency:" in backend.prompts[0]


def test_rubric_is_overridable() -> None:
    cfg = JudgeConfig(rubric={"accuracy": "Is the number right?"})
    prompt = judge_prompt(cfg.rubric, "What is 2+2?", "4", "5")
    assert "- accuracy: Is the number right?" in prompt and "correctness" not in prompt
    assert judge(cfg, ["q"], ["r"], ["a"], backend=_Canned(["accuracy: 2"])).means() == {"accuracy": 2, "overall": 2}


@pytest.mark.slow
def test_local_judge_with_the_default_model_runs_and_accounts_for_every_reply() -> None:
    """The 135M default model is a weak judge: whatever it replies, every answer is scored or counted."""
    cfg = JudgeConfig(max_new_tokens=40)
    questions = ["What is the capital of France?", "What is 2 plus 2?"]
    result = judge(cfg, questions, ["Paris.", "4."], ["Paris is the capital of France.", "Five."],
                   backend=LocalBackend(cfg))
    summary = result.to_dict()
    assert summary["n"] == 2
    assert summary["unparsed"] + sum(1 for s in result.scores if s is not None) == 2
    for s in result.scores:
        assert s is None or all(1 <= v <= 10 for v in s.values())
