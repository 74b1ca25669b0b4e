"""Reward functions for GRPO (and the reward of PPO): a registry plus user functions given as ``module:function``.

Every function has TRL's reward signature ``f(prompts, completions, completion_ids, **columns) -> list[float]``;
``columns`` holds the dataset's other columns (``answer``: the record's reference answer).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.utils.errors import ConfigError, Problem
from tuneforge.utils.names import Registry

RewardFn = Callable[..., list[float]]
#: Builders: config -> reward function.
REWARDS: Registry[Callable[[RunConfig], RewardFn]] = Registry("reward function")


def extract_answer(text: str, pattern: re.Pattern[str]) -> str:
    """The first group of the last match of ``pattern`` (the whole stripped text when nothing matches)."""
    matches = list(pattern.finditer(text.strip()))
    if not matches:
        return text.strip()
    m = matches[-1]
    return (m.group(1) if m.groups() else m.group(0)).strip()


def _named(name: str, fn: RewardFn) -> RewardFn:
    fn.__name__ = name  # TRL logs each reward as rewards/<__name__>/mean
    return fn


def exact_answer(cfg: RunConfig) -> RewardFn:
    """1 when the answer extracted from the completion equals the reference's, else 0."""
    pattern = re.compile(cfg.alignment.answer_pattern)

    def reward(prompts: list[Any], completions: list[str], answer: list[str] | None = None, **_: Any) -> list[float]:
        if answer is None:
            raise ConfigError("exact_answer needs reference answers", [Problem(
                "the dataset has no reference answers", field="alignment.rewards",
                fix="use sft-style records whose last assistant message is the reference answer")])
        return [float(extract_answer(c, pattern) == extract_answer(a, pattern))
                for c, a in zip(completions, answer, strict=True)]

    return _named("exact_answer", reward)


def regex_match(cfg: RunConfig) -> RewardFn:
    """1 when the completion contains a match of ``alignment.answer_pattern`` (a format reward), else 0."""
    pattern = re.compile(cfg.alignment.answer_pattern)

    def reward(prompts: list[Any], completions: list[str], **_: Any) -> list[float]:
        return [float(pattern.search(c.strip()) is not None) for c in completions]

    return _named("regex", reward)


def length_penalty(cfg: RunConfig) -> RewardFn:
    """0 up to ``alignment.target_length`` tokens, then falling linearly to -1 at twice that length."""
    target = cfg.alignment.target_length

    def reward(prompts: list[Any], completions: list[str], completion_ids: list[list[int]] | None = None,
               **_: Any) -> list[float]:
        lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else \
            [len(c.split()) for c in completions]
        return [-min(1.0, max(0, n - target) / target) for n in lengths]

    return _named("length", reward)


def reward_model(cfg: RunConfig) -> RewardFn:
    """The score of a trained reward model (``alignment.reward_model``) for prompt + completion."""
    from tuneforge.models.reward import RewardScorer, reward_template

    if not cfg.alignment.reward_model:
        raise ConfigError("no reward model given", [Problem(
            "reward 'reward_model' needs alignment.reward_model", field="alignment.reward_model",
            fix="set alignment.reward_model: runs/<your rm run>")])
    scorer = RewardScorer.load(cfg.alignment.reward_model)
    eot = reward_template(scorer.tokenizer, cfg.alignment.reward_model).eot or ""

    def reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        # Decoded completions lose the end-of-turn token, but the reward model was trained on answers that
        # end with it and reads its score there: without it the score is read at an untrained position.
        return scorer.score([p + c + ("" if c.endswith(eot) else eot)
                             for p, c in zip(prompts, completions, strict=True)])

    return _named("reward_model", reward)


for _name, _builder in {"exact_answer": exact_answer, "regex": regex_match, "format": regex_match,
                        "length": length_penalty, "reward_model": reward_model}.items():
    REWARDS.register(_name, _builder)


def user_function(spec: str) -> RewardFn:
    """Import ``module:function`` (the module must be importable, e.g. a file in the working directory)."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("cannot load a reward function", [Problem(
            f"{spec!r}: {exc}", field="alignment.rewards",
            fix="give module:function with the module importable from the working directory")]) from exc
    if not callable(fn):
        raise ConfigError("reward function is not callable", [Problem(f"{spec!r} is not a function",
                                                                      field="alignment.rewards")])
    return fn


def build_rewards(cfg: RunConfig) -> list[RewardFn]:
    """The configured reward functions, checked all at once."""
    problems: list[Problem] = []
    out: list[RewardFn] = []
    for spec in cfg.alignment.rewards:
        if ":" in spec:
            out.append(user_function(spec))
        elif spec in REWARDS:
            out.append(REWARDS.get(spec)(cfg))
        else:
            problems.append(Problem(f"unknown reward {spec!r}", field="alignment.rewards",
                                    fix=f"use one of {', '.join(REWARDS.names())} or module:function"))
    weights = cfg.alignment.reward_weights
    if weights is not None and len(weights) != len(cfg.alignment.rewards):
        problems.append(Problem(f"{len(weights)} reward_weights for {len(cfg.alignment.rewards)} rewards",
                                field="alignment.reward_weights", fix="give one weight per reward"))
    if problems:
        raise ConfigError("bad reward functions", problems)
    return out
