"""Evaluation: answer the test items with each source, score them the same way, compare, write files.

Base vs tuned on the same items is the default (docs/evaluation.md); an endpoint or a predictions file is
scored with the same metrics and report.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config.schema import EvaluationConfig, RunConfig
from tuneforge.evaluation.judge import BACKENDS, judge
from tuneforge.evaluation.metrics import corpus_scores, example_scores
from tuneforge.evaluation.report import verdict, write_eval_files
from tuneforge.evaluation.sources import (
    BaseView,
    EndpointSource,
    EvalItem,
    ModelSource,
    eval_items,
    read_predictions,
)

Echo = Callable[[str], None]
METRIC_KEYS = ("bleu4", "rouge1", "rouge2", "rougeL", "exact_match", "ppl")


@dataclass
class EvalResult:
    """Scores of every source on the same items, the comparison, and the files written."""

    n: int
    metrics: dict[str, dict[str, float | None]]
    judge: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdict: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: n, metrics per source, judge (when used), verdict and files."""
        out: dict[str, Any] = {"n": self.n, "metrics": self.metrics, "verdict": self.verdict,
                               "files": [str(p) for p in self.files]}
        if self.judge:
            out["judge"] = self.judge
        return out


def score_answers(items: list[EvalItem], answers: dict[str, list[str]], cfg: EvaluationConfig,
                  ppl: dict[str, float | None], echo: Echo = print) -> EvalResult:
    """Text metrics, perplexity and (when asked) the judge for every source; per-example rows for review."""
    refs = [i.reference for i in items]
    metrics: dict[str, dict[str, float | None]] = {}
    for label, preds in answers.items():
        scores: dict[str, float | None] = dict(corpus_scores(preds, refs, cfg.normalize, cfg.metrics))
        if "ppl" in cfg.metrics:
            scores["ppl"] = ppl.get(label)
        metrics[label] = scores
    judged: dict[str, dict[str, Any]] = {}
    if "judge" in cfg.metrics:
        backend = BACKENDS.get(cfg.judge.backend)(cfg.judge)  # one judge model for every source
        for label, preds in answers.items():
            echo(f"judge: scoring {len(preds)} {label} answers with {cfg.judge.backend}:{cfg.judge.model}")
            judged[label] = judge(cfg.judge, [i.question for i in items], refs, preds, backend).to_dict()
    rows = []
    for k, item in enumerate(items):
        row: dict[str, Any] = {"prompt": item.question, "reference": item.reference}
        for label, preds in answers.items():
            row[f"{label}_answer"] = preds[k]
            row[f"{label}_scores"] = example_scores(preds[k], item.reference, cfg.normalize, cfg.metrics)
        rows.append(row)
    return EvalResult(len(items), metrics, judged, verdict(metrics, judged), rows)


def evaluate_engine(cfg: RunConfig, tuned: Any, items: list[EvalItem], base_path: str | None, out_dir: Path,
                    echo: Echo = print) -> EvalResult:
    """Base and tuned answers from one loaded model (adapter switched off for the base), scored and written.

    Args:
        cfg: The run config (its evaluation section decides metrics, lengths, judge).
        tuned: The tuned model's :class:`~tuneforge.inference.engine.Engine`, or None to evaluate only the base.
        items: Test items.
        base_path: The base model (for full fine-tunes, loaded beside the tuned one).
        out_dir: Where predictions, metrics and the chart go.
    """
    e = cfg.evaluation
    sources: list[ModelSource] = []
    if tuned is not None and e.base:
        sources.append(BaseView(tuned, base_path))
    if tuned is not None:
        sources.append(ModelSource(tuned, "tuned"))
    else:
        from tuneforge.inference.engine import Engine

        sources.append(ModelSource(Engine.load(base_path or cfg.model.name_or_path, cfg.template.name,
                                               cfg.template.system, cfg.model.device_map), "base"))
    answers, ppl = {}, {}
    for source in sources:
        echo(f"eval: {source.label} model answering {len(items)} questions")
        answers[source.label] = source.answers(items, e.max_new_tokens, e.batch_size)
        ppl[source.label] = _ppl(source, items, cfg) if "ppl" in e.metrics else None
    return _finish(score_answers(items, answers, e, ppl, echo), out_dir)


def _ppl(source: ModelSource, items: list[EvalItem], cfg: RunConfig) -> float | None:
    from tuneforge.evaluation.perplexity import answer_perplexity

    examples = [i.example for i in items if i.example is not None]
    if not examples:
        return None
    eng = source.engine
    context = source.off() if isinstance(source, BaseView) else contextlib.nullcontext()
    with context:
        value = answer_perplexity(eng.model, eng.tokenizer, eng.template, examples, cfg.data.max_length)
    return None if math.isnan(value) else value


def evaluate_target(cfg: RunConfig, model: str | None, base_path: str | None, out_dir: Path,
                    split: str | None = None, file: str | None = None, echo: Echo = print) -> EvalResult:
    """Evaluate a trained model (a run or model folder) against its base, or only the base when ``model`` is None.

    Preference, reward and RL runs are judged by their stage's own held-out metrics (evaluation/held_out.py).
    """
    from tuneforge.evaluation.held_out import EVALUATORS, evaluate_stage

    if model is not None and cfg.training.stage in EVALUATORS:
        return evaluate_stage(cfg, model, base_path, out_dir, split=split, file=file, echo=echo)
    items = eval_items(cfg, split, file)
    tuned = None
    if model is not None:
        from tuneforge.inference.engine import Engine

        tuned = Engine.load(model, device_map=cfg.model.device_map)
    return evaluate_engine(cfg, tuned, items, base_path, out_dir, echo)


def evaluate_endpoint(cfg: RunConfig, base_url: str, model: str, out_dir: Path, api_key: str | None = None,
                      split: str | None = None, file: str | None = None, echo: Echo = print) -> EvalResult:
    """Evaluate any OpenAI-compatible model on the test items (the first step before fine-tuning, docs/advice.md)."""
    items = eval_items(cfg, split, file)
    echo(f"eval: {model} at {base_url} answering {len(items)} questions")
    answers = {model: EndpointSource(base_url, model, api_key).answers(items, cfg.evaluation.max_new_tokens, 1)}
    return _finish(score_answers(items, answers, cfg.evaluation, {}, echo), out_dir)


def evaluate_predictions(cfg: RunConfig, path: str, out_dir: Path, echo: Echo = print) -> EvalResult:
    """Score predictions made elsewhere (JSONL with prediction, reference, optional prompt)."""
    items, predictions = read_predictions(path)
    return _finish(score_answers(items, {"predictions": predictions}, cfg.evaluation, {}, echo), out_dir)


def _finish(result: EvalResult, out_dir: Path) -> EvalResult:
    result.files = write_eval_files(out_dir, result.n, result.metrics, result.judge, result.verdict, result.rows)
    return result


def load_metrics(path: str | Path) -> dict[str, Any]:
    """A saved ``metrics.json`` (or an ``eval --json`` output) as a dict."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
