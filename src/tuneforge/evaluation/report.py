"""The evaluation report: base vs tuned table with deltas, what to change when tuned is worse, files.

Files written into the evaluation folder: ``metrics.json``, ``predictions.jsonl`` and
``predictions.csv`` (prompt, reference, each source's answer, for manual review), ``eval.png`` (bar
chart) and ``eval.md`` (the section also placed in the run's ``report.md``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

#: Metrics on a 0-100 scale where higher is better; perplexity is lower-is-better.
HIGHER_BETTER = ("bleu4", "rouge1", "rouge2", "rougeL", "exact_match")
LABELS = {"bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
          "exact_match": "exact match", "ppl": "perplexity"}
#: Relative change below which base and tuned count as equal (noise of a small test split).
TOLERANCE = 0.02
SECTION_START, SECTION_END = "<!-- tuneforge:eval -->", "<!-- /tuneforge:eval -->"

SUGGESTIONS = {
    "text": "the tuned answers match the references less than the base model's: check that the training "
            "answers look like the test references (style, length, language), that the template is right "
            "(`tuneforge data inspect`), and that the data is diverse (`tuneforge data check`); if the training "
            "loss went near 0 early, it overfitted: fewer epochs (about a third) or a lower learning rate",
    "ppl": "the tuned model predicts the test answers worse than the base: overfitting or forgetting; lower the "
           "learning rate or the epochs, raise weight decay, or mix general data in (data.replay)",
    "judge": "the judge rates the tuned answers lower: review predictions.csv by hand, then adjust data quality "
             "or the learning rate as above",
}


def _worse(metric: str, base: float, tuned: float) -> bool:
    if metric == "ppl":
        return tuned > base * (1 + TOLERANCE)
    return tuned < base - max(0.5, abs(base) * TOLERANCE)


def verdict(metrics: dict[str, dict[str, float | None]], judged: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences comparing tuned with base (docs/evaluation.md): what is worse, what to change, what is high."""
    if not {"base", "tuned"} <= set(metrics):
        return _single(metrics)
    base, tuned = metrics["base"], metrics["tuned"]
    lines, kinds = [], []
    for m in (*HIGHER_BETTER, "ppl"):
        b, t = base.get(m), tuned.get(m)
        if b is None or t is None:
            continue
        if _worse(m, b, t):
            lines.append(f"tuned is worse than base on {LABELS[m]}: {b:.2f} -> {t:.2f}")
            kinds.append("ppl" if m == "ppl" else "text")
    jb, jt = (judged.get(k, {}).get("scores", {}).get("overall") for k in ("base", "tuned"))
    if jb is not None and jt is not None and jt < jb - 0.25:
        lines.append(f"tuned is worse than base by the judge: {jb:.1f} -> {jt:.1f} (of 10)")
        kinds.append("judge")
    lines += [f"suggestion: {SUGGESTIONS[k]}" for k in dict.fromkeys(kinds)]
    if not kinds:
        better = [LABELS[m] for m in HIGHER_BETTER if (tuned.get(m) or 0) > (base.get(m) or 0) + 0.5]
        lines.append("tuned is at least as good as base on every metric"
                     + (f" and better on {', '.join(better)}" if better else ""))
    if (tuned.get("bleu4") or 0) >= 50:
        lines.append("BLEU-4 of 50-60 is already high for open-ended generation")
    return lines


def _single(metrics: dict[str, dict[str, float | None]]) -> list[str]:
    lines = []
    for label, m in metrics.items():
        if (m.get("bleu4") or 0) < 20 and (m.get("exact_match") or 0) < 50:
            lines.append(f"{label} scores low on this task (BLEU-4 {m.get('bleu4', 0):.1f}): fine-tuning is worth trying")
        else:
            lines.append(f"{label} already does well on this task: try prompting before fine-tuning")
    return lines


def table_rows(metrics: dict[str, dict[str, float | None]],
               judged: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: metric, one column per source, and delta (tuned - base) when both exist."""
    sources = list(metrics)
    both = {"base", "tuned"} <= set(sources)
    header = ["metric", *sources] + (["delta"] if both else [])
    rows = []
    known = (*HIGHER_BETTER, "ppl")
    # a stage's own metrics (preference accuracy, reward, ...) follow the text metrics, with 3 decimals
    others = [m for m in dict.fromkeys(k for v in metrics.values() for k in v) if m not in known]
    for m in (*known, *others):
        values = [metrics[s].get(m) for s in sources]
        if all(v is None for v in values):
            continue
        digits = 2 if m in known else 3
        row = [LABELS.get(m, m), *("-" if v is None else f"{v:.{digits}f}" for v in values)]
        if both:
            b, t = metrics["base"].get(m), metrics["tuned"].get(m)
            row.append("-" if b is None or t is None else f"{t - b:+.{digits}f}")
        rows.append(row)
    if judged:
        scores = [judged.get(s, {}).get("scores", {}).get("overall") for s in sources]
        row = ["judge (1-10)", *("-" if v is None else f"{v:.2f}" for v in scores)]
        if both:
            row.append("-" if None in scores[:2] else f"{scores[sources.index('tuned')] - scores[sources.index('base')]:+.2f}")
        rows.append(row)
    return header, rows


def markdown(n: int, metrics: dict[str, dict[str, float | None]], judged: dict[str, dict[str, Any]],
             lines: list[str], chart: str | None) -> str:
    """The evaluation section for report.md."""
    header, rows = table_rows(metrics, judged)
    out = [SECTION_START, "## Evaluation", "", f"{n} test examples, the same for every model.", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    for label, j in judged.items():
        out.append(f"\njudge on {label}: {j['n'] - j['unparsed']} of {j['n']} replies scored, "
                   f"{j['unparsed']} without a readable score")
    out += [""] + [f"- {line}" for line in lines]
    if chart:
        out += ["", f"![base vs tuned]({chart})"]
    return "\n".join(out + ["", SECTION_END, ""])


def bar_chart(metrics: dict[str, dict[str, float | None]], path: Path) -> Path:
    """Grouped bars of the 0-100 metrics, one colour per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in HIGHER_BETTER if any(v.get(m) is not None for v in metrics.values())]
    width = 0.8 / max(1, len(metrics))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, (label, values) in enumerate(metrics.items()):
        xs = [i + k * width for i in range(len(names))]
        ax.bar(xs, [values.get(m) or 0 for m in names], width, label=label)
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(names))], [LABELS[m] for m in names])
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_eval_files(out_dir: Path, n: int, metrics: dict[str, dict[str, float | None]],
                     judged: dict[str, dict[str, Any]], lines: list[str], rows: list[dict[str, Any]]) -> list[Path]:
    """metrics.json, predictions.jsonl/.csv, eval.png and eval.md in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "metrics.json", out_dir / "predictions.jsonl", out_dir / "predictions.csv"]
    summary = {"n": n, "metrics": metrics, "verdict": lines} | ({"judge": judged} if judged else {})
    files[0].write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    files[1].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    _write_csv(files[2], rows)
    chart = bar_chart(metrics, out_dir / "eval.png")
    md = out_dir / "eval.md"
    md.write_text(markdown(n, metrics, judged, lines, chart.name), encoding="utf-8")
    return [*files, chart, md]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Flat CSV for spreadsheets (utf-8 with BOM so Excel shows Chinese correctly)."""
    columns = [k for k in rows[0] if not k.endswith("_scores")] if rows else []
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def add_to_run_report(report: Path, section: str, chart: Path | None = None, tag: str = "eval") -> None:
    """Put a section (the evaluation by default) into a run's report.md, replacing an earlier one with the same tag."""
    start, end = f"<!-- tuneforge:{tag} -->", f"<!-- /tuneforge:{tag} -->"
    if not section.startswith(start):
        section = f"{start}\n{section.rstrip()}\n{end}\n"
    text = report.read_text(encoding="utf-8") if report.exists() else "# Run report\n"
    if chart is not None:
        section = section.replace(f"]({chart.name})", f"]({chart.relative_to(report.parent).as_posix()})")
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text, encoding="utf-8")
