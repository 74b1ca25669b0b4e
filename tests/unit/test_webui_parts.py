"""Web UI parts without a browser: path confinement, the form -> config, languages, run records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tuneforge.utils.errors import ConfigError
from tuneforge.webui.i18n import LANGUAGES, TEXT
from tuneforge.webui.paths import PathGuard
from tuneforge.webui.runs import RunManager, TrainForm, build_config, form_from_config


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "qa.json").write_text("[]", encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "extra.json").write_text("[]", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    return tmp_path


def test_paths_inside_the_workdir_and_data_dirs_resolve(work: Path) -> None:
    guard = PathGuard(work / "work", [work / "data"])
    assert guard.resolve("qa.json") == work / "work" / "qa.json"
    assert guard.resolve(str(work / "data" / "extra.json")) == work / "data" / "extra.json"


@pytest.mark.parametrize("typed", ["../secret.txt", "/etc/passwd", "~/.ssh/id_rsa", "link/secret.txt"])
def test_paths_outside_are_refused_with_the_fix(work: Path, typed: str) -> None:
    os.symlink(work, work / "work" / "link")  # a link inside pointing outside does not open a way out
    guard = PathGuard(work / "work", [work / "data"])
    with pytest.raises(ConfigError) as err:
        guard.resolve(typed, "datasets")
    assert "outside the folders this UI may read" in str(err.value) and "--data-dir" in str(err.value)


def test_models_are_default_an_allowed_folder_or_a_hub_id(work: Path) -> None:
    guard = PathGuard(work / "work")
    assert guard.model("default") == "default" and guard.model("") == "default"
    assert guard.model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # an id, not a file read
    with pytest.raises(ConfigError):
        guard.model("/etc")


def test_the_form_becomes_a_valid_config_and_reports_every_problem_at_once(work: Path) -> None:
    guard = PathGuard(work / "work", [work / "data"])
    cfg = build_config(TrainForm(datasets="qa.json, " + str(work / "data" / "extra.json"), learning_rate=0,
                                 max_steps=12, lora_rank=8, run_name="r1"), guard, work / "work" / "runs")
    assert cfg["data"]["datasets"] == [str(work / "work" / "qa.json"), str(work / "data" / "extra.json")]
    assert cfg["training"] == {"stage": "sft", "max_steps": 12}  # 0 / empty means: advised
    assert cfg["method"] == {"name": "lora", "lora": {"rank": 8}} and cfg["output"]["name"] == "r1"
    with pytest.raises(ConfigError) as err:
        build_config(TrainForm(datasets="../secret.txt", model="/etc"), guard, work / "runs")
    assert [p.field for p in err.value.problems] == ["datasets", "model"]
    with pytest.raises(ConfigError) as err:
        build_config(TrainForm(datasets="qa.json", max_length=4), guard, work / "runs")
    assert "data.max_length" in str(err.value)


def test_registry_entries_name_their_dataset_info(work: Path) -> None:
    info = work / "data" / "dataset_info.json"
    info.write_text(json.dumps({"demo": {"file_name": "extra.json"}}), encoding="utf-8")
    guard = PathGuard(work / "work", [work / "data"])
    assert guard.dataset_infos() == [info]
    cfg = build_config(TrainForm(registry=[f"demo @ {info}"]), guard, work / "runs")
    assert cfg["data"]["datasets"] == ["demo"] and cfg["data"]["dataset_info"] == str(info)


def test_every_text_has_both_languages() -> None:
    assert set(LANGUAGES.values()) == {"en", "zh"}
    assert all(set(v) == {"en", "zh"} and all(v.values()) for v in TEXT.values())


def test_run_records_survive_a_new_manager(work: Path) -> None:
    manager = RunManager(work / "work")
    (work / "work" / "webui").mkdir()
    (work / "work" / "webui" / "gone.json").write_text(json.dumps(
        {"name": "gone", "pid": 2**22 + 12345, "config": "c", "log": "l", "run_dir": str(work / "r"), "started": 0}))
    again = RunManager(work / "work")
    assert again.names() == ["gone"] and again.current() == "gone"
    assert not again.is_running("gone") and again.status("gone") == "failed"  # no such process, no finished state
    assert not manager.stop("gone")


def test_a_config_reads_back_into_the_form_it_came_from(work: Path) -> None:
    info = work / "data" / "dataset_info.json"
    info.write_text(json.dumps({"demo": {"file_name": "extra.json"}}), encoding="utf-8")
    guard = PathGuard(work / "work", [work / "data"])
    form = TrainForm(datasets="qa.json", registry=["demo @ ../data/dataset_info.json"], stage="dpo", method="qlora", learning_rate=1e-4,
                     max_steps=30, batch_size=2, max_length=256, lora_rank=16, run_name="again",
                     placeholders="name=Forge, author=Acme")
    back = form_from_config(build_config(form, guard, work / "work" / "runs"), work / "work")
    assert back == form


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_run_names_are_plain_folder_names(work: Path, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(TrainForm(datasets="qa.json", run_name=name), PathGuard(work / "work"), work / "runs")
    assert [p.field for p in err.value.problems] == ["run_name"]


def test_a_finished_run_is_never_started_over(work: Path) -> None:
    runs = work / "work" / "runs"
    (runs / "done").mkdir(parents=True)
    (runs / "done" / "tuneforge_run.json").write_text(json.dumps({"status": "finished"}), encoding="utf-8")
    cfg = build_config(TrainForm(datasets="qa.json", run_name="done"), PathGuard(work / "work"), runs)
    with pytest.raises(ConfigError) as err:
        RunManager(work / "work").start(cfg)
    assert "never overwrites" in str(err.value) and not (work / "work" / "webui" / "done.json").exists()


def test_runs_typed_into_a_dropdown_are_confined_too(work: Path) -> None:
    from tuneforge.webui.app import WebUI

    ui = WebUI(work / "work")
    table, samples, message = ui.evaluate("../../etc", 5)
    assert table == [] and "outside the folders this UI may read" in message
    status, log = ui.export("/etc", "out", False, "English")
    assert status == "export failed" and "outside the folders" in log


def test_placeholders_are_key_value_pairs(work: Path) -> None:
    guard = PathGuard(work / "work")
    cfg = build_config(TrainForm(datasets="qa.json", placeholders="name=Forge，author = Acme 公司"), guard, work / "r")
    assert cfg["data"]["placeholders"] == {"name": "Forge", "author": "Acme 公司"}
    with pytest.raises(ConfigError) as err:
        build_config(TrainForm(datasets="qa.json", placeholders="name Forge"), guard, work / "r")
    assert [p.field for p in err.value.problems] == ["placeholders"] and "KEY=VALUE" in str(err.value)


def test_curves_leave_out_a_log_line_still_being_written(work: Path) -> None:
    run = work / "work" / "runs" / "live"
    run.mkdir(parents=True)
    (run / "train_log.jsonl").write_text(
        '{"step": 1, "loss": 2.0, "ppl": 7.4}\n{"step": 2, "eval_loss": 1.9, "eval_ppl": 6.7}\n{"step": 3, "lo',
        encoding="utf-8")
    curves = RunManager(work / "work").curves("live")
    assert curves["loss"] == [{"step": 1, "value": 2.0, "series": "train"}, {"step": 2, "value": 1.9, "series": "eval"}]
    assert [p["value"] for p in curves["ppl"]] == [7.4, 6.7]
