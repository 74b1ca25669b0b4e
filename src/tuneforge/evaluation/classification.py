"""Held-out evaluation of a classifier (docs/evaluation.md, "Classification").

The tuned model's predictions on examples it never trained on give accuracy, macro-F1 (the mean of the
per-class F1, so a rare class counts as much as a frequent one), a per-class report and a confusion
matrix. A new head has no "base" prediction to compare with, so the base row is the majority class of the
training split: what a model that learned nothing but the class frequencies scores. ``token_cls``
counts every word (its first token) as one prediction.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.data.records import Example
from tuneforge.utils.errors import DataError, Problem


def gold_and_predicted(classifier: Any, examples: list[Example]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Gold and predicted labels (one per text, or per word) and one review row per example.

    Raises:
        DataError: an example of the wrong kind, or a label the run was not trained on (file, record, field).
    """
    from tuneforge.data.processors.labels import unknown_labels

    kind = "tagging" if classifier.token_level else "cls"
    wrong = [ex for ex in examples if ex.kind != kind]
    if wrong or not examples:
        where = wrong[0].origin if wrong else None
        raise DataError("nothing to classify", [Problem(
            f"{len(wrong)} held-out records are {wrong[0].kind if wrong else 'missing'}, not {kind}",
            file=where.file if where else None, index=where.index if where else None,
            fix="evaluate on records of the run's format: {text, label} or {tokens, tags}")])
    problems = unknown_labels(examples, {name: i for i, name in enumerate(classifier.labels)})
    if problems:
        raise DataError("labels the model was not trained on", problems)
    if classifier.token_level:
        tagged = classifier.tag([ex.words for ex in examples])
        rows = [{"tokens": ex.words, "tags": ex.tags, "predicted": p} for ex, p in zip(examples, tagged, strict=True)]
        return [t for ex in examples for t in ex.tags], [t for p in tagged for t in p], rows
    probs = classifier.probabilities([ex.text for ex in examples])
    predicted = [classifier.labels[max(range(len(p)), key=p.__getitem__)] for p in probs]
    rows = [{"text": ex.text, "label": ex.category, "predicted": label,
             "probabilities": dict(zip(classifier.labels, (round(x, 4) for x in p), strict=True))}
            for ex, label, p in zip(examples, predicted, probs, strict=True)]
    return [ex.category for ex in examples], predicted, rows


def scores(gold: list[str], predicted: list[str], labels: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over the run's labels (a class absent from both counts as F1 0: sklearn's rule)."""
    from sklearn.metrics import accuracy_score, f1_score

    present = [name for name in labels if name in set(gold) | set(predicted)]
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, labels=present, average="macro", zero_division=0))}


def majority_label(cfg: RunConfig) -> str:
    """The most frequent label of the training split (ties: the first in the run's order)."""
    from tuneforge.data.loader import load_data, split_examples

    train = split_examples(load_data(cfg.data).examples, cfg.data)[0] if not cfg.data.eval_datasets else \
        load_data(cfg.data).examples
    counts = Counter(t for ex in train for t in ([ex.category] if ex.kind == "cls" else ex.tags))
    return max(sorted(counts), key=lambda k: counts[k])


def per_class_table(gold: list[str], predicted: list[str], labels: list[str]) -> str:
    """Markdown rows: precision, recall, F1 and support of each class."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, n = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    out = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    out += [f"| {name} | {a:.3f} | {b:.3f} | {c:.3f} | {int(d)} |"
            for name, a, b, c, d in zip(labels, p, r, f, n, strict=True)]
    return "\n".join(out)


def confusion_plot(gold: list[str], predicted: list[str], labels: list[str], path: Path) -> Path:
    """The confusion matrix (rows: true class, columns: predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(gold, predicted, labels=labels, ax=ax, colorbar=False,
                                            xticks_rotation=45)
    ax.set_title("held-out confusion matrix")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def classification(cfg: RunConfig, models: Any, examples: list[Example], out_dir: Path | None = None) -> Any:
    """seq_cls, token_cls: accuracy and macro-F1 of the tuned classifier against the majority class."""
    from tuneforge.evaluation.held_out import Measured

    classifier = models.tuned
    gold, predicted, rows = gold_and_predicted(classifier, examples)
    majority = majority_label(cfg)
    labels = classifier.labels
    metrics: dict[str, dict[str, float | None]] = {
        "base": dict(scores(gold, [majority] * len(gold), labels)), "tuned": dict(scores(gold, predicted, labels))}
    unit = "words" if classifier.token_level else "texts"
    section = [f"Base is the majority class of the training split (`{majority}`); {len(gold)} held-out {unit}.",
               "", "### Per class (tuned)", "", per_class_table(gold, predicted, labels)]
    figures = []
    if out_dir is not None:
        figures.append(confusion_plot(gold, predicted, labels, out_dir / "confusion.png"))
        section += ["", "![confusion matrix](confusion.png)"]
    return Measured(metrics, rows, sections=["\n".join(section)], figures=figures)
