"""The command line: exit codes, JSON output, every problem reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import write_json
from tuneforge.cli.main import app

runner = CliRunner()

GOOD = [{"instruction": f"Question number {i}?", "input": "", "output": f"Answer {i}."} for i in range(5)]


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_data_check_json_has_the_promised_keys(tmp_path: Path) -> None:
    bad = [*GOOD, {"instruction": "", "output": "x"}, {"instruction": "q", "output": ""}]
    code, out = _run("data", "check", str(write_json(tmp_path / "d.json", bad)), "--json")
    assert code == 1
    report = json.loads(out)
    assert {"records", "format", "errors", "warnings", "duplicates", "truncated", "token_lengths"} <= set(report)
    assert report["records"] == 7 and report["format"] == "alpaca"
    assert [(e["index"], e["field"]) for e in report["errors"]] == [(5, "instruction"), (6, "output")]
    assert {"file", "index", "line", "field", "message"} <= set(report["errors"][0])
    assert set(report["token_lengths"]) >= {"min", "p50", "p95", "max"}


def test_data_check_of_good_data_exits_zero(tmp_path: Path) -> None:
    code, out = _run("data", "check", str(write_json(tmp_path / "d.json", GOOD)))
    assert code == 0, out
    assert "5" in out and "alpaca" in out


def test_data_check_of_a_missing_file_names_it(tmp_path: Path) -> None:
    code, out = _run("data", "check", str(tmp_path / "nope.json"))
    assert code != 0 and "nope.json" in out and "Traceback" not in out


def _config(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def test_config_validate_reports_every_problem_with_exit_2(tmp_path: Path) -> None:
    path = _config(tmp_path, {"data": {"datasets": ["x.json"], "max_lenght": 512},
                              "method": {"name": "lroa"}, "training": {"learning_rate": "fast"}})
    code, out = _run("config", "validate", str(path))
    assert code == 2
    assert "max_length" in out and "'lora'" in out and "learning_rate" in out  # did-you-mean + the third error


def test_config_overrides_and_show(tmp_path: Path) -> None:
    data = write_json(tmp_path / "d.json", GOOD)
    path = _config(tmp_path, {"data": {"datasets": [str(data)]}})
    code, out = _run("config", "show", str(path), "method.lora.rank=32", "--json")
    assert code == 0, out
    assert json.loads(out)["method"]["lora"]["rank"] == 32
    code, out = _run("config", "validate", str(path), "method.lora.rank=0")
    assert code == 2 and "method.lora.rank" in out


def test_config_schema_is_json_schema() -> None:
    code, out = _run("config", "schema")
    schema = json.loads(out)
    assert code == 0 and {"model", "data", "template", "method", "training", "evaluation", "output"} <= set(
        schema["properties"])


def test_split_refuses_to_overwrite(tmp_path: Path) -> None:
    data = write_json(tmp_path / "d.json", GOOD * 4)
    args = ("data", "split", str(data), "--out", str(tmp_path / "s"))
    assert _run(*args)[0] == 0
    code, out = _run(*args)
    assert code == 1 and "overwrite" in out


def test_inspect_shows_the_trained_span(tmp_path: Path) -> None:
    code, out = _run("data", "inspect", str(write_json(tmp_path / "d.json", GOOD)), "-n", "1")
    assert code == 0, out
    assert "Answer 0.<|im_end|>" in out and "tokens" in out


def test_formats_and_templates_list_the_registries() -> None:
    assert all(n in _run("data", "formats")[1] for n in ("alpaca", "sharegpt", "messages", "preference_qa"))
    assert all(n in _run("data", "templates")[1] for n in ("chatml", "llama3", "qwen", "qwen3", "mistral", "gemma", "phi3",
                                                                "glm4", "deepseek3", "default", "alpaca_zh"))


def test_models_list_shows_the_default_model() -> None:
    code, out = _run("models", "list", "--json")
    models = json.loads(out)
    assert code == 0 and any(m["name"] == "smollm2-135m-instruct" and Path(m["path"]).is_dir() for m in models)


def test_chat_prompt_with_a_tiny_model(tiny_model_dir: Path) -> None:
    code, out = _run("chat", str(tiny_model_dir), "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", "5")
    assert code == 0, out
    assert out.strip()  # random weights: some text, which ends at max_new_tokens


@pytest.mark.parametrize("args", [("chat", "/no/such/model", "--prompt", "x")])
def test_bad_model_path_is_a_clear_error(args: tuple[str, ...]) -> None:
    code, out = _run(*args)
    assert code != 0 and "/no/such/model" in out and "Traceback" not in out
