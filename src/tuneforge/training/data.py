"""Training data: load, split, add replay, process, and describe it (``data_report.json``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.data.loader import load_data, require_usable, split_examples
from tuneforge.data.processors.base import LOST_SHARE_WARN, Processed, ProcessOptions, process_examples
from tuneforge.data.quality import length_summary
from tuneforge.data.records import Example, Message
from tuneforge.data.templates import ChatTemplate
from tuneforge.evaluation.forgetting import trained_answers
from tuneforge.utils.errors import DataError, Problem

#: Generates answers for prompts (the base model's own, for self-distilled replay).
Answerer = Callable[[list[list[Message]]], list[str]]
#: Examples -> processed columns.
Process = Callable[[list[Example], ProcessOptions], Processed]


@dataclass
class TrainingData:
    """Processed splits plus what the run log and report need."""

    train: Processed
    eval: Processed | None
    test: list[Example]
    report: dict[str, Any] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)  # what training pushes towards (the forgetting guard's signal)


def prepare(cfg: RunConfig, tokenizer: Any, template: ChatTemplate, stage: str,
            answerer: Answerer | None = None, process: Process = process_examples) -> TrainingData:
    """Everything between the config's datasets and token columns; refuses unusable data.

    ``process`` turns examples into columns (the stage's processor; by default the examples' kind's).

    Raises:
        DataError: parse errors (unless ``data.skip_invalid``), wrong kinds, unfilled placeholders,
            or no training example left.
    """
    data = load_data(cfg.data)
    require_usable(data, stage, skip_invalid=cfg.data.skip_invalid, strict_placeholders=True)
    if cfg.data.eval_datasets:
        train, val, test = data.examples, _load_eval(cfg, stage), []
    else:
        train, val, test = split_examples(data.examples, cfg.data)
    replay = _replay(cfg, stage, len(train), answerer)
    opts = ProcessOptions(tokenizer, template, cfg.data.max_length, cfg.template.train_on_prompt,
                          cfg.template.mask_history)
    processed = process(train + replay, opts)
    if len(processed) == 0:
        raise DataError("no training example survived processing", [Problem(
            f"all {len(train)} examples were dropped: {processed.stats.dropped}", field="data.max_length",
            fix="raise data.max_length or shorten the prompts")])
    evaluated = process(val, opts) if val else None
    report = {
        "examples": {"train": len(train), "replay": len(replay), "validation": len(val), "test": len(test)},
        "datasets": [{"name": r.name, "format": r.format, "records": r.records, "used": r.used} for r in data.reports],
        "processed": {"rows": len(processed), "truncated": processed.stats.truncated,
                      "dropped": processed.stats.dropped, "turns_dropped": processed.stats.turns_dropped},
        "token_lengths": length_summary(processed.stats.lengths), "max_length": cfg.data.max_length,
        "trained_tokens": _trained_tokens(processed.columns),
        "warnings": [w.to_dict() for w in data.warnings + _lost(processed, cfg.data.max_length)],
        "invalid_skipped": len(data.errors) if cfg.data.skip_invalid else 0,
    }
    return TrainingData(processed, evaluated if evaluated is not None and len(evaluated) else None, test, report,
                        trained_answers(train))


def _lost(processed: Processed, max_length: int) -> list[Problem]:
    """The truncation warning when more than LOST_SHARE_WARN of the training examples are not trained whole."""
    stats = processed.stats
    warning = stats.loss_warning(max_length)
    return [warning] if warning is not None and stats.lost > LOST_SHARE_WARN * stats.examples else []


def _load_eval(cfg: RunConfig, stage: str) -> list[Example]:
    data = load_data(cfg.data, cfg.data.eval_datasets)
    require_usable(data, stage, skip_invalid=cfg.data.skip_invalid, strict_placeholders=True)
    return data.examples


def _replay(cfg: RunConfig, stage: str, n_train: int, answerer: Answerer | None) -> list[Example]:
    """A seeded sample of the replay datasets, ``replay_ratio`` x the training-set size."""
    if not cfg.data.replay or cfg.data.replay_ratio == 0:
        return []
    data = load_data(cfg.data, cfg.data.replay)
    require_usable(data, stage, skip_invalid=cfg.data.skip_invalid)
    k = max(1, round(cfg.data.replay_ratio * n_train))
    rng = random.Random(cfg.data.seed)
    pool = data.examples
    picked = rng.sample(pool, k) if k <= len(pool) else [rng.choice(pool) for _ in range(k)]
    if cfg.data.replay_self_answers and answerer is not None and stage == "sft":
        prompts = [ex.messages[:-1] for ex in picked]
        answers = answerer(prompts)
        picked = [Example("sft", ex.origin, [*ex.messages[:-1], Message("assistant", a)], ex.system, ex.tools)
                  for ex, a in zip(picked, answers, strict=True) if a.strip()]
    return picked


def _trained_tokens(columns: dict[str, list[Any]]) -> int:
    """Label tokens (sft, pt) or answer tokens (preference, KTO) of the training rows."""
    if "labels" in columns and columns["labels"] and isinstance(columns["labels"][0], int):
        return sum(len(row) for row in columns["input_ids"])  # a class per text: every input token is read
    if "labels" in columns:
        return sum(sum(1 for x in row if x != -100) for row in columns["labels"])
    return sum(len(row) for key in ("chosen_ids", "rejected_ids", "completion_ids") for row in columns.get(key, []))
