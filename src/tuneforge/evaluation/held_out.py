"""Held-out evaluation of preference, reward and RL runs (docs/evaluation.md, "Preference and RL runs").

Text metrics (BLEU, ROUGE) judge an SFT model; a DPO, KTO, reward or GRPO model is judged by what its stage
optimises, measured on examples it did not train on (the test split, else the validation split):

- dpo, simpo, orpo: does the tuned policy prefer the chosen answer more than the base does?
- kto: do desirable answers gain log-probability against undesirable ones?
- rm: does the reward model score the chosen answer above the rejected one?
- grpo, ppo: does the tuned model's greedy answer earn more reward than the base model's? For ppo also its
  sampled answers (what PPO optimises, and what chat gives at its default temperature): a policy whose greedy
  answers already earn the reward model's ceiling can still improve the answers it samples.

Each evaluator fills ``{"base": {...}, "tuned": {...}}`` for :class:`~tuneforge.evaluation.evaluate.EvalResult`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tuneforge.config.catalog import STAGE_TABLE
from tuneforge.config.schema import RunConfig
from tuneforge.data.loader import load_data, split_examples
from tuneforge.data.records import Example
from tuneforge.data.split import SPLIT_NAMES
from tuneforge.utils.errors import DataError, Problem
from tuneforge.utils.names import Registry

#: The two headline metrics of each held-out evaluation, higher is better (the verdict reads them).
HEADLINE_OF: dict[str, tuple[str, str]] = {
    "pairwise": ("preference_accuracy", "reward_margin"), "unpaired": ("log_ratio_gap", "logp_gap"),
    "reward_model": ("accuracy", "margin"), "sampled_reward": ("reward", "sampled_reward"),
    "classification": ("accuracy", "macro_f1"),
}
#: Stage -> its headline metrics (each stage names its evaluation in config/catalog.py).
HEADLINE: dict[str, tuple[str, str]] = {s.name: HEADLINE_OF[s.evaluation] for s in STAGE_TABLE if s.evaluation}


@dataclass
class Measured:
    """What an evaluator found: metrics per model and one row per example (for review)."""

    metrics: dict[str, dict[str, float | None]]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)  # why a metric could not be measured
    sections: list[str] = field(default_factory=list)  # markdown after the metrics table (per-class report)
    figures: list[Path] = field(default_factory=list)  # charts written beside eval.md (a confusion matrix)


@dataclass
class Models:
    """The tuned model and a way to compute as the base (adapter off, or a separate copy)."""

    tuned: Any  # an Engine (policy stages), a RewardScorer (rm) or a Classifier (seq_cls, token_cls)
    base: Any  # a BaseView (policy stages) or None
    run: str
    out_dir: Path | None = None  # where the evaluation's files go (an evaluator may add charts)


Evaluator = Callable[[RunConfig, Models, list[Example]], Measured]
EVALUATORS: Registry[Evaluator] = Registry("held-out evaluation")


def held_out(cfg: RunConfig, split: str | None = None) -> tuple[list[Example], str]:
    """The examples training never saw: the test split if it has any, else the validation split.

    The split is the seeded, content-hashed one training used; ``data.eval_datasets`` is the validation set.

    Raises:
        DataError: there is no held-out example at all.
    """
    if cfg.data.eval_datasets and split in (None, "validation"):
        return load_data(cfg.data, cfg.data.eval_datasets).examples[: cfg.evaluation.max_samples], \
            "data.eval_datasets"
    parts = split_examples(load_data(cfg.data).examples, cfg.data)
    names = [split] if split else ["test", "validation"]
    for name in names:
        examples = parts[SPLIT_NAMES.index(name)]
        if examples:
            return examples[: cfg.evaluation.max_samples], f"the {name} split"
    raise DataError("nothing held out to evaluate on", [Problem(
        f"the {' and '.join(names)} split(s) of data.datasets are empty", field="data.split",
        fix="hold some data out, e.g. data.split: [0.9, 0.1, 0.0]")])


def answer_logps(model: Any, prompts: list[list[int]], answers: list[list[int]]) -> list[float]:
    """Sum of the log-probabilities of each answer's tokens given its prompt."""
    import torch

    out = []
    device = next(model.parameters()).device
    for prompt, answer in zip(prompts, answers, strict=True):
        ids = torch.tensor([prompt + answer], device=device)
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1: -1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(answer, device=device)[:, None])
        out.append(float(logp.sum()))
    return out


def _columns(cfg: RunConfig, engine: Any, examples: list[Example], kind: str) -> dict[str, list[Any]]:
    from tuneforge.data.processors.base import ProcessOptions, process_examples

    chosen = [ex for ex in examples if ex.kind == kind]
    if not chosen:
        raise DataError("nothing to evaluate", [Problem(f"no {kind} example among the held-out records",
                                                        field="data.split", fix=f"hold out {kind} examples")])
    opts = ProcessOptions(engine.tokenizer, engine.template, cfg.data.max_length)
    return process_examples(chosen, opts).columns


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def pairwise(cfg: RunConfig, models: Models, examples: list[Example]) -> Measured:
    """dpo, simpo, orpo: implicit-reward accuracy and margin of tuned over base; each model's own preference.

    With d = (log p_tuned(chosen) - log p_base(chosen)) - (log p_tuned(rejected) - log p_base(rejected)),
    ``preference_accuracy`` is the share of pairs with d > 0 (ties count half, so the base is 0.5) and
    ``reward_margin`` the mean d in nats (DPO's implicit reward with beta 1). ``chosen_preferred`` and
    ``logp_margin`` are each model's own: the share of pairs whose chosen answer is the likelier one, and
    the mean log-probability difference.
    """
    cols = _columns(cfg, models.tuned, examples, "pairwise")
    p, c, r = cols["prompt_ids"], cols["chosen_ids"], cols["rejected_ids"]
    with models.base.off() as base:
        bc, br = answer_logps(base, p, c), answer_logps(base, p, r)
    tc, tr = answer_logps(models.tuned.model, p, c), answer_logps(models.tuned.model, p, r)
    d = [(a - b) - (x - y) for a, b, x, y in zip(tc, bc, tr, br, strict=True)]
    metrics = {
        "base": {"preference_accuracy": 0.5, "reward_margin": 0.0, **_own(bc, br)},
        "tuned": {"preference_accuracy": _mean([1.0 if v > 0 else 0.5 if v == 0 else 0.0 for v in d]),
                  "reward_margin": _mean(d), **_own(tc, tr)},
    }
    rows = [{"chosen_base": a, "rejected_base": b, "chosen_tuned": x, "rejected_tuned": y}
            for a, b, x, y in zip(bc, br, tc, tr, strict=True)]
    return Measured(metrics, rows)


def _own(chosen: list[float], rejected: list[float]) -> dict[str, float | None]:
    return {"chosen_preferred": _mean([float(a > b) for a, b in zip(chosen, rejected, strict=True)]),
            "logp_margin": _mean([a - b for a, b in zip(chosen, rejected, strict=True)])}


def unpaired(cfg: RunConfig, models: Models, examples: list[Example]) -> Measured:
    """kto: ``log_ratio_gap`` = mean (log p_tuned - log p_base) of desirable answers minus that of undesirable
    ones (0 for the base); ``logp_gap`` = each model's mean per-token log-probability, desirable minus
    undesirable."""
    from tuneforge.training.stages.kto import unpaired as as_unpaired

    # KTO trains on labelled answers or on pairs (chosen: desirable, rejected: undesirable); so is it judged
    kinds = sorted({ex.kind for ex in examples} & {"unpaired", "pairwise"}) or ["unpaired"]
    parts = [as_unpaired(_columns(cfg, models.tuned, examples, kind)) for kind in kinds]
    p, a, good = ([x for part in parts for x in part[key]] for key in ("prompt_ids", "completion_ids", "label"))
    with models.base.off() as base:
        lb = answer_logps(base, p, a)
    lt = answer_logps(models.tuned.model, p, a)

    def gap(values: list[float]) -> float | None:
        pos, neg = [v for v, g in zip(values, good, strict=True) if g], [v for v, g in zip(values, good, strict=True)
                                                                           if not g]
        return None if not pos or not neg else _mean(pos) - _mean(neg)  # type: ignore[operator]

    per_token = [len(x) for x in a]
    metrics = {
        "base": {"log_ratio_gap": 0.0, "logp_gap": gap([v / n for v, n in zip(lb, per_token, strict=True)])},
        "tuned": {"log_ratio_gap": gap([t - b for t, b in zip(lt, lb, strict=True)]),
                  "logp_gap": gap([v / n for v, n in zip(lt, per_token, strict=True)])},
    }
    rows = [{"desirable": g, "logp_base": b, "logp_tuned": t} for g, b, t in zip(good, lb, lt, strict=True)]
    notes = [] if 0 < sum(good) < len(good) else [
        f"all {len(good)} held-out answers are {'desirable' if good and good[0] else 'undesirable'}: a gap needs "
        "both kinds; hold out more data"]
    return Measured(metrics, rows, notes)


def reward_model(cfg: RunConfig, models: Models, examples: list[Example]) -> Measured:
    """rm: pairwise accuracy and mean margin of the reward model's scores (its base has no trained head:
    chance is 0.5 and 0)."""
    from tuneforge.evaluation.score import render_answer
    from tuneforge.models.reward import reward_template

    scorer = models.tuned
    template = reward_template(scorer.tokenizer, models.run)
    pairs = [ex for ex in examples if ex.kind == "pairwise"]
    chosen = scorer.score([render_answer(template, ex, ex.chosen) for ex in pairs])
    rejected = scorer.score([render_answer(template, ex, ex.rejected) for ex in pairs])
    metrics = {"base": {"accuracy": 0.5, "margin": 0.0},
               "tuned": {"accuracy": _mean([float(a > b) for a, b in zip(chosen, rejected, strict=True)]),
                         "margin": _mean([a - b for a, b in zip(chosen, rejected, strict=True)])}}
    return Measured(metrics, [{"score_chosen": a, "score_rejected": b} for a, b in zip(chosen, rejected, strict=True)])


#: Sampled answers per held-out prompt for ``sampled_reward`` (grpo, ppo: what they optimise is the reward of
#: answers sampled at the training temperature): enough to average out one unlucky sample.
SAMPLES = 4


def generated_reward(cfg: RunConfig, models: Models, examples: list[Example], samples: int = 0) -> Measured:
    """grpo, ppo: the mean reward of greedy answers to held-out prompts, base vs tuned (the run's own rewards:
    ``alignment.rewards`` for grpo, the reward model for ppo); with ``samples``, also ``sampled_reward``, the
    mean over that many answers per prompt sampled at ``alignment.temperature`` (seeded, the same for both)."""
    import torch

    from tuneforge.evaluation.sources import items_from_examples

    items = items_from_examples(examples)
    tokens, batch = cfg.alignment.max_new_tokens, cfg.evaluation.batch_size
    sources = {"base": models.base, "tuned": _source(models.tuned)}
    answers = {label: src.answers(items, tokens, batch) for label, src in sources.items()}
    score = _rewarder(cfg, models, items)
    per = {label: score(texts) for label, texts in answers.items()}
    metrics: dict[str, dict[str, float | None]] = {label: {"reward": _mean(v)} for label, v in per.items()}
    rows = [{"prompt": i.question, "reference": i.reference, "base_answer": b, "tuned_answer": t,
             "reward_base": rb, "reward_tuned": rt}
            for i, b, t, rb, rt in zip(items, answers["base"], answers["tuned"], per["base"], per["tuned"],
                                       strict=True)]
    for label, src in sources.items() if samples else ():
        torch.manual_seed(cfg.training.seed)  # base and tuned draw from the same random stream
        sampled = score(src.answers(items * samples, tokens, batch, temperature=cfg.alignment.temperature))
        metrics[label]["sampled_reward"] = _mean(sampled)
        # Per prompt too (answer k of prompt i sits at k * len(items) + i), so a paired standard error of the
        # gain can be read from predictions.jsonl.
        for i, row in enumerate(rows):
            row[f"sampled_reward_{label}"] = _mean(sampled[i::len(items)])
    return Measured(metrics, rows)


def _rewarder(cfg: RunConfig, models: Models, items: list[Any]) -> Callable[[list[str]], list[float]]:
    """Total reward of answers to ``items`` (repeated items allowed): the run's rewards, summed per answer."""
    from tuneforge.training.rewards import build_rewards

    template = models.tuned.template
    prompts = [template.prompt(i.prompt, i.system) for i in items]
    references = [i.reference for i in items]
    rewards = build_rewards(cfg) if cfg.training.stage == "grpo" else build_rewards(
        cfg.model_copy(update={"alignment": cfg.alignment.model_copy(update={"rewards": ["reward_model"]})}))

    def score(texts: list[str]) -> list[float]:
        repeat = len(texts) // len(items)
        ids = [models.tuned.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        totals = [0.0] * len(texts)
        for fn in rewards:
            got = fn(prompts=prompts * repeat, completions=texts, completion_ids=ids, answer=references * repeat)
            for k, v in enumerate(got):
                totals[k] += float(v or 0.0)
        return totals

    return score


def _source(engine: Any) -> Any:
    from tuneforge.evaluation.sources import ModelSource

    return ModelSource(engine, "tuned")


def classification(cfg: RunConfig, models: Models, examples: list[Example]) -> Measured:
    """seq_cls, token_cls: accuracy and macro-F1 (``evaluation/classification.py``)."""
    from tuneforge.evaluation.classification import classification as measure

    return measure(cfg, models, examples, models.out_dir)


_sampled = partial(generated_reward, samples=SAMPLES)
#: Each held-out evaluation by the name config/catalog.py's stage table gives it.
EVALUATION_KINDS: dict[str, Evaluator] = {"pairwise": pairwise, "unpaired": unpaired, "reward_model": reward_model,
                                          "sampled_reward": _sampled, "classification": classification}
for _spec in STAGE_TABLE:
    if _spec.evaluation:
        EVALUATORS.register(_spec.name, EVALUATION_KINDS[_spec.evaluation])


def verdict(stage: str, metrics: dict[str, dict[str, float | None]]) -> list[str]:
    """One sentence per headline metric: did the tuned model move the right way?"""
    out = []
    for key in dict.fromkeys(HEADLINE[stage]):
        b, t = metrics["base"].get(key), metrics["tuned"].get(key)
        if b is None or t is None:
            continue
        word = "better than" if t > b else "no better than"
        out.append(f"tuned is {word} base on {key}: {b:.3f} -> {t:.3f}")
    return out


def markdown(stage: str, n: int, where: str, metrics: dict[str, dict[str, float | None]], lines: list[str],
             sections: list[str] | None = None) -> str:
    """The evaluation section of report.md for a preference, reward or RL run."""
    keys = list(dict.fromkeys(k for m in metrics.values() for k in m))
    from tuneforge.evaluation.report import SECTION_END, SECTION_START

    out = [SECTION_START, "## Evaluation", "", f"{n} held-out examples ({where}), {stage} metrics "
           "(docs/evaluation.md).", "", "| metric | base | tuned | delta |", "|---|---|---|---|"]
    for k in keys:
        b, t = metrics["base"].get(k), metrics["tuned"].get(k)
        cells = ["-" if v is None else f"{v:.3f}" for v in (b, t)]
        delta = "-" if b is None or t is None else f"{t - b:+.3f}"
        out.append(f"| {k} | {cells[0]} | {cells[1]} | {delta} |")
    out += [""] + [f"- {line}" for line in lines] + [""]
    for section in sections or []:
        out += [section, ""]
    out += [SECTION_END, ""]
    return "\n".join(out)


def write_files(out_dir: Path, stage: str, n: int, where: str, measured: Measured, lines: list[str]) -> list[Path]:
    """metrics.json, predictions.jsonl and eval.md (the section placed in report.md)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "metrics.json", out_dir / "predictions.jsonl", out_dir / "eval.md"]
    summary = {"n": n, "stage": stage, "held_out": where, "metrics": measured.metrics, "verdict": lines}
    files[0].write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    files[1].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in measured.rows), encoding="utf-8")
    files[2].write_text(markdown(stage, n, where, measured.metrics, lines, measured.sections), encoding="utf-8")
    return files + measured.figures


def evaluate_stage(cfg: RunConfig, run: str, base_path: str | None, out_dir: Path, tuned: Any = None,
                   split: str | None = None, file: str | None = None, echo: Callable[[str], None] = print,
                   examples: tuple[list[Example], str] | None = None) -> Any:
    """Evaluate a preference, reward or RL run on held-out examples against its base; write the files.

    Args:
        cfg: The run's config (``training.stage`` picks the evaluator).
        run: The run (or model) folder.
        base_path: The base model (full fine-tunes load it beside the tuned one).
        out_dir: Where metrics.json, predictions.jsonl and eval.md go.
        tuned: The tuned model's Engine when it is in memory (right after training); else loaded from ``run``.
        split: test or validation; default the test split, else the validation split.
        file: Evaluate on this data file instead of a split.
        examples: The held-out examples and where they come from, when the caller has read them already.

    Returns:
        An :class:`~tuneforge.evaluation.evaluate.EvalResult` (``--json`` prints it).
    """
    from tuneforge.evaluation.evaluate import EvalResult

    stage = cfg.training.stage
    if file:
        from tuneforge.config.schema import DatasetSpec

        examples = load_data(cfg.data, [DatasetSpec(path=file)]).examples, file
    items, where = examples or held_out(cfg, split)
    echo(f"eval: {stage} metrics on {len(items)} held-out examples ({where})")
    models = _models(cfg, run, base_path, tuned)
    models.out_dir = out_dir
    measured = EVALUATORS.get(stage)(cfg, models, items)
    lines = verdict(stage, measured.metrics) + measured.notes
    files = write_files(out_dir, stage, len(measured.rows), where, measured, lines)
    return EvalResult(len(measured.rows), measured.metrics, {}, lines, measured.rows, files)


def _models(cfg: RunConfig, run: str, base_path: str | None, tuned: Any) -> Models:
    if cfg.training.stage in ("seq_cls", "token_cls"):
        from tuneforge.models.classifier import Classifier

        return Models(Classifier.load(run), None, run)
    if cfg.training.stage == "rm":
        from tuneforge.models.reward import RewardScorer

        return Models(RewardScorer.load(run), None, run)
    from tuneforge.evaluation.sources import BaseView
    from tuneforge.inference.engine import Engine

    engine = tuned or Engine.load(run, device_map=cfg.model.device_map)
    return Models(engine, BaseView(engine, base_path), run)
