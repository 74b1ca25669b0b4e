"""Every shipped example, trained as written, judged on held-out data: example, metric, base, tuned, seconds.

Each example is trained with `tuneforge train` into a scratch folder (nothing under runs/ is touched), and the
table is read from what the runs themselves measured after training: eval/metrics.json (held-out
preference, reward and RL metrics, or BLEU/ROUGE/perplexity for SFT) and eval/forgetting.json (the
forgetting guard). A pipeline gives one row per stage, each judged against its own base (the previous
stage). Prints one JSON line per example as it finishes, then a Markdown table for the README.

Run: .venv/bin/python bench/examples_bench.py [--only dpo_lora ...] [--set training.seed=1]   (about an hour on a
2-core CPU)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tuneforge.evaluation.held_out import HEADLINE

ROOT = Path(__file__).resolve().parents[1]
#: The held-out metrics each example claims to move, per stage (higher is better unless noted): the headline
#: metrics of the run's own held-out evaluation, and ROUGE-L and perplexity for SFT.
CLAIMS: dict[str, list[str]] = {"sft": ["rougeL", "ppl"],
                                **{stage: list(dict.fromkeys(keys)) for stage, keys in HEADLINE.items()}}


def run_example(config: Path, out: Path, overrides: list[str] = ()) -> tuple[float, Path]:
    """Train one example into ``out`` (with ``key=value`` overrides, e.g. another seed); its wall time and run folder."""
    name = config.stem
    cmd = [str(ROOT / ".venv" / "bin" / "tuneforge"), "train", str(config), "--overwrite", "--no-progress",
           f"output.dir={out}", f"output.name={name}", *overrides]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, out / name


def stage_rows(run: Path, label: str) -> list[dict[str, Any]]:
    """The claimed metrics of one stage's run folder, base and tuned, plus the forgetting guard's figures."""
    cfg = (run / "config.yaml").read_text(encoding="utf-8")
    stage = next((line.split(":", 1)[1].strip() for line in cfg.splitlines() if line.strip().startswith("stage:")),
                 "sft")
    rows = []
    metrics_file = run / "eval" / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))["metrics"]
        for key in CLAIMS.get(stage, []):
            base, tuned = metrics.get("base", {}).get(key), metrics.get("tuned", {}).get(key)
            if tuned is not None:
                rows.append({"example": label, "stage": stage, "metric": f"held-out {key}", "base": base,
                             "tuned": tuned})
    rows += named_rows(run, label, stage)
    guard_file = run / "eval" / "forgetting.json"
    if guard_file.is_file():
        guard = json.loads(guard_file.read_text(encoding="utf-8"))
        rows.append({"example": label, "stage": stage, "metric": "general ppl (forgetting)",
                     "base": guard["ppl"]["base"], "tuned": guard["ppl"]["tuned"]})
        rows.append({"example": label, "stage": stage, "metric": "general answers leaked (forgetting)",
                     "base": 0.0, "tuned": guard["leaked"]})
    return rows


def named_rows(run: Path, label: str, stage: str) -> list[dict[str, Any]]:
    """Identity examples (a ``{{name}}`` placeholder): held-out answers and general probe answers giving the name."""
    import yaml

    name = (yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["data"].get("placeholders") or {}).get(
        "name")
    predictions, guard = run / "eval" / "predictions.jsonl", run / "eval" / "forgetting.json"
    if not name or not predictions.is_file():
        return []
    said = name.lower()
    answers = [json.loads(x) for x in predictions.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [{"example": label, "stage": stage, "metric": "held-out answers giving the name",
             "base": f"{sum(said in a['base_answer'].lower() for a in answers)}/{len(answers)}",
             "tuned": f"{sum(said in a['tuned_answer'].lower() for a in answers)}/{len(answers)}"}]
    if guard.is_file():
        probes = json.loads(guard.read_text(encoding="utf-8"))["answers"]
        rows.append({"example": label, "stage": stage, "metric": "general answers giving the name (forgetting)",
                     "base": f"{sum(said in a['base'].lower() for a in probes)}/{len(probes)}",
                     "tuned": f"{sum(said in a['tuned'].lower() for a in probes)}/{len(probes)}"})
    return rows


def search_rows(config: Path, run: Path) -> list[dict[str, Any]]:
    """A hyper-parameter search: its objective for the first trial (the advice, ``start_with``) and the best."""
    import optuna
    import yaml

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run / 'study.db'}")
    finished = [t for t in study.trials if t.value is not None]
    objective = yaml.safe_load(config.read_text(encoding="utf-8"))["search"].get("objective", "eval_loss")
    label = config.stem
    return [{"example": label, "stage": "search", "metric": f"{objective}: advice (trial 0) -> best of {len(finished)}",
             "base": study.trials[0].value, "tuned": study.best_value}]


def measure(config: Path, out: Path, overrides: list[str] = ()) -> list[dict[str, Any]]:
    """All rows of one example (one per stage and metric), with the example's wall time on each."""
    seconds, run = run_example(config, out, overrides)
    stages = sorted(p for p in run.iterdir() if p.is_dir() and p.name[:2].isdigit()) if run.is_dir() else []
    if (run / "study.db").is_file():
        rows = search_rows(config, run)
    elif stages:
        rows = [r for s in stages for r in stage_rows(s, f"{config.stem}/{s.name}")]
    else:
        rows = stage_rows(run, config.stem)
    for r in rows:
        r["seconds"] = round(seconds)
    return rows


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="example names (file stems); default every example")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuneforge-examples"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every example, e.g. training.seed=1 to repeat with another seed")
    args = parser.parse_args()
    configs = [p for p in sorted((ROOT / "examples").glob("*.yaml")) if not args.only or p.stem in args.only]
    rows: list[dict[str, Any]] = []
    for config in configs:
        got = measure(config, args.out, args.set)
        rows += got
        for r in got:
            print(json.dumps(r, ensure_ascii=False), flush=True)
    print("\n| example | metric | base | tuned | seconds |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['example']} | {r['metric']} | {_fmt(r['base'])} | {_fmt(r['tuned'])} | {r['seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
