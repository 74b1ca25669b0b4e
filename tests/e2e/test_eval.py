"""Evaluation end to end: base vs tuned on the same test items, files, report, prediction files, endpoints."""

from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import write_jsonl
from tests.e2e.conftest import QA, write_config
from tuneforge.cli.main import app
from tuneforge.config import load_config
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("evalrun")
    data = tmp / "qa.json"
    data.write_text(json.dumps(QA), encoding="utf-8")
    cfg = write_config(tmp, tiny_model_dir, data, data={"split": [0.7, 0.15, 0.15]},
                       training={"max_steps": 6}, evaluation={"max_new_tokens": 12, "auto": False})
    return train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None).run.root


def _json(out: str) -> dict[str, Any]:
    return json.loads(out[out.index("{"):])


def test_eval_run_compares_base_and_tuned_on_the_test_split(finished_run: Path) -> None:
    result = runner.invoke(app, ["eval", str(finished_run), "--json"])
    assert result.exit_code == 0, result.output
    obj = _json(result.stdout)
    assert obj["n"] == 6  # 15% of 40 records, the same seeded split training used
    for label in ("base", "tuned"):
        assert set(obj["metrics"][label]) >= {"bleu4", "rouge1", "rouge2", "rougeL", "exact_match", "ppl"}
        assert 0 <= obj["metrics"][label]["bleu4"] <= 100 and obj["metrics"][label]["ppl"] > 1
    # training lowered the loss on this task, so the tuned model predicts test answers better than its base
    assert obj["metrics"]["tuned"]["ppl"] < obj["metrics"]["base"]["ppl"]
    eval_dir = finished_run / "eval"
    rows = [json.loads(x) for x in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {"prompt", "reference", "base_answer", "tuned_answer"} <= set(rows[0])
    train_prompts = {q["instruction"] for q in QA}
    assert all(r["prompt"] in train_prompts for r in rows)
    with (eval_dir / "predictions.csv").open(encoding="utf-8-sig") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert (eval_dir / "eval.png").stat().st_size > 1000
    report = (finished_run / "report.md").read_text()
    assert report.count("## Evaluation\n") == 1 and "| metric | base | tuned | delta |" in report
    again = runner.invoke(app, ["eval", str(finished_run)])  # the section is replaced, not duplicated
    assert again.exit_code == 0 and "evaluation on 6 examples" in again.stdout
    assert (finished_run / "report.md").read_text().count("## Evaluation\n") == 1


def test_eval_predictions_file_scores_and_names_bad_records(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q1", "prediction": "The answer is 42.", "reference": "The answer is 42."},
        {"prompt": "q2", "prediction": "", "reference": "北京是中国的首都"}])
    result = runner.invoke(app, ["eval", "--predictions", str(good), "--json"])
    assert result.exit_code == 0, result.output
    metrics = _json(result.stdout)["metrics"]["predictions"]
    assert metrics["exact_match"] == 50 and metrics["bleu4"] == pytest.approx(50) and metrics["ppl"] is None
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prediction": "x"}, {"reference": "y"}])
    result = runner.invoke(app, ["eval", "--predictions", str(bad)])
    assert result.exit_code != 0
    assert "'reference'" in result.output and "'prediction'" in result.output and "bad.jsonl" in result.output


def _sum_answer(question: str) -> str:
    a, b = (int(w) for w in question.replace("?", "").split() if w.isdigit())
    return f"{a} plus {b} is {a + b}."


class _Echo(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: answers sums right (or grades), and records the requests."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        question = body["messages"][-1]["content"]
        text = "correctness: 8\nrelevance: 7\nfluency: 9" if "strict grader" in question else _sum_answer(question)
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_eval_endpoint_asks_every_test_question_and_can_judge(finished_run: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Echo.requests.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        result = runner.invoke(app, ["eval", str(finished_run), "--endpoint", url, "--model", "m1", "--json",
                                     "--judge", "evaluation.judge.backend=openai", f"evaluation.judge.base_url={url}",
                                     "evaluation.judge.model=grader"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    obj = _json(result.stdout)
    asked = [r for r in _Echo.requests if r["model"] == "m1"]
    assert obj["n"] == 6 and len(asked) == 6
    assert obj["metrics"]["m1"]["exact_match"] == 100  # the endpoint answers every test question right
    judged = obj["judge"]["m1"]
    assert judged["n"] == 6 and judged["unparsed"] == 0 and judged["scores"]["overall"] == pytest.approx(8)
    assert sum(1 for r in _Echo.requests if r["model"] == "grader") == 6


def test_training_with_a_test_split_ends_with_the_base_vs_tuned_table(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "qa.json"
    data.write_text(json.dumps(QA), encoding="utf-8")
    cfg = write_config(tmp_path, tiny_model_dir, data, data={"split": [0.7, 0.15, 0.15]},
                       training={"max_steps": 4}, evaluation={"max_new_tokens": 8, "max_samples": 3})
    result = runner.invoke(app, ["train", str(cfg), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "evaluation on 3 examples" in result.stdout and "ROUGE-L" in result.stdout
    run = tmp_path / "runs" / "r"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 3 and {"base", "tuned"} == set(metrics["metrics"])
    assert "| metric | base | tuned | delta |" in (run / "report.md").read_text()


def test_chat_and_eval_ask_with_the_system_prompt_the_model_was_trained_with(tmp_path: Path,
                                                                              tiny_model_dir: Path) -> None:
    from tuneforge.inference.engine import Engine

    data = tmp_path / "qa.json"
    data.write_text(json.dumps(QA), encoding="utf-8")
    cfg = write_config(tmp_path, tiny_model_dir, data, training={"max_steps": 2},
                       template={"system": "You are a terse calculator."})
    run = train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None).run.root
    engine = Engine.load(str(run))
    assert engine.template.default_system == "You are a terse calculator."
    assert "You are a terse calculator." in engine.template.prompt([], "")
    assert Engine.load(str(run), system="Other.").template.default_system == "Other."
