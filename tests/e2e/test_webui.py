"""The web UI in a real headless Chromium (Playwright): fill the Train tab for a tiny run, start it, see
the curve appear, re-attach after a reload, switch to Chinese, chat with the result. Screenshots are
taken into a temporary folder (the README's come from ``make screenshots``, on the real default model)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import QA, varied
from tests.e2e.ui_helpers import CHROMIUM, FLAGS, chat, free_port
from tests.e2e.ui_helpers import fill as _fill
from tests.e2e.ui_helpers import value as _value
from tests.e2e.ui_helpers import wait_text as _wait_text

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A working directory with a data file and a tiny model of varied weights (so chat answers differ)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("webui")
    varied(AutoModelForCausalLM.from_pretrained(tiny_model_dir)).save_pretrained(root / "model")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(root / "model")
    (root / "qa.json").write_text(json.dumps(QA), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def ui_url(workdir: Path) -> Iterator[str]:
    from tuneforge.webui.app import build, launch

    port = free_port()
    demo = build(workdir, poll_s=1.0)
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: `make test`'s setup installs Debian's chromium where apt-get "
                    "can run as root; elsewhere install chromium and re-run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def _line_pixels(png: bytes) -> int:
    """Pixels of the train curve's colour (#1f77b4) in a screenshot."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if abs(r - 31) < 40 and abs(g - 119) < 40 and abs(b - 180) < 40)


def test_train_from_the_ui_then_reattach_switch_language_and_chat(ui_url: str, browser: Any, workdir: Path,
                                                                   tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 2300})  # no resize for full-page shots
    page.goto(ui_url)
    page.wait_for_selector("#tf-model")
    _fill(page, "tf-model", "model")
    _fill(page, "tf-datasets", "qa.json")
    _fill(page, "tf-max-steps", "12")
    _fill(page, "tf-max-length", "128")
    _fill(page, "tf-run-name", "ui-tiny")

    page.click("#tf-recommend")  # advised values arrive with their reasons
    page.wait_for_selector("#tf-advice >> text=training.learning_rate", timeout=120_000)
    assert float(_value(page, "tf-lr")) > 0

    page.click("#tf-start")
    _wait_text(page, "tf-message", "started ui-tiny", 30)
    _wait_text(page, "tf-status", "finished", 300)
    page.wait_for_selector("#tf-loss-plot canvas, #tf-loss-plot svg", timeout=30_000)
    page.wait_for_timeout(1500)  # let the plot draw before the picture
    assert _line_pixels(page.locator("#tf-loss-plot").screenshot()) > 200  # the curve is drawn, not just axes
    page.screenshot(path=str(tmp_path / "webui-train.png"))
    run = workdir / "runs" / "ui-tiny"
    assert (run / "model" / "adapter_config.json").is_file()  # trained by the subprocess, into the run folder
    assert "tuneforge train" in (workdir / "webui" / "ui-tiny.log").read_text()
    assert "loss" in _value(page, "tf-log") or "step" in _value(page, "tf-log")

    page.reload()  # a reload finds the run again (state lives in files, not in the page)
    _wait_text(page, "tf-status", "ui-tiny", 30, start=True)
    assert _value(page, "tf-run") == "ui-tiny"
    _wait_text(page, "tf-run-name", "ui-tiny", 10)  # and the form it was started with
    assert _value(page, "tf-datasets") == "qa.json" and _value(page, "tf-max-steps") == "12"

    page.get_by_label("中文").check()
    page.wait_for_selector("text=开始训练", timeout=10_000)
    page.screenshot(path=str(tmp_path / "webui-train-zh.png"))

    text = chat(page, "ui-tiny", "What is 2 plus 3?", 24)
    assert "What is 2 plus 3?" in text and len(text) > 30
    page.screenshot(path=str(tmp_path / "webui-chat.png"))
    assert all((tmp_path / f"webui-{n}.png").stat().st_size > 20_000 for n in ("train", "train-zh", "chat"))
    page.close()


def test_stop_sends_ctrl_c_and_the_run_can_resume(workdir: Path) -> None:
    """Stop from the run manager (what the Stop button calls): a checkpoint is saved, the status says so."""
    import time

    from tuneforge.webui.paths import PathGuard
    from tuneforge.webui.runs import RunManager, TrainForm, build_config

    manager = RunManager(workdir)
    form = TrainForm(model="model", datasets="qa.json", max_steps=400, max_length=128, run_name="ui-stop",
                     batch_size=2)
    launch = manager.start(build_config(form, PathGuard(workdir), manager.runs_dir))
    deadline = time.time() + 240
    while not manager.curves("ui-stop")["loss"] and time.time() < deadline:
        time.sleep(0.5)
    assert manager.is_running("ui-stop") and RunManager(workdir).is_running("ui-stop")  # a fresh UI sees it too
    assert manager.stop("ui-stop")
    while manager.is_running("ui-stop") and time.time() < deadline:
        time.sleep(0.5)
    assert manager.status("ui-stop") == "interrupted", manager.log_tail("ui-stop")
    assert list((workdir / "runs" / "ui-stop" / "checkpoints").glob("checkpoint-*"))
    assert not manager.stop("ui-stop") and launch.pid > 0
    assert os.path.basename(launch.config) == "ui-stop.yaml"


@pytest.mark.ci  # ~2 minutes (a training run, then eval and export in subprocesses): CI only, `make test-ci`
def test_evaluate_and_export_tabs_on_a_finished_run(workdir: Path) -> None:
    """What the Evaluate and Export buttons call: the CLI in a subprocess, results read back."""
    import time

    from tuneforge.webui.app import FORM_FIELDS, WebUI
    from tuneforge.webui.runs import TrainForm, build_config

    ui = WebUI(workdir)
    form = TrainForm(model="model", datasets="qa.json", max_steps=3, max_length=128, run_name="ui-done")
    values = [getattr(form, name) for name in FORM_FIELDS]
    estimate = ui.estimate(*values)
    assert "trainable" in estimate and "memory GiB" in estimate and "3 steps" in estimate
    preview = ui.preview(*values)  # one example through the template, trained tokens in green
    assert "<pre" in preview and "What is" in preview and "color: #008000" in preview
    ui.runs.start(build_config(form, ui.guard, ui.runs.runs_dir))
    deadline = time.time() + 300
    while ui.runs.is_running("ui-done") and time.time() < deadline:
        time.sleep(0.5)
    assert ui.runs.status("ui-done") == "finished", ui.runs.log_tail("ui-done")

    table, samples, verdict = ui.evaluate("ui-done", 4)
    assert table[0][:3] == ["metric", "base", "tuned"] and any(row[0].startswith("BLEU") for row in table[1:])
    assert 0 < len(samples) <= 4 and all(len(row) == 4 and row[0] for row in samples)

    status, log = ui.export("ui-done", "exported/ui-done", False, "English")
    assert status == "exported and verified" and "verified" in log
    assert (workdir / "exported" / "ui-done" / "model.safetensors").is_file()
    status, log = ui.export("ui-done", "exported/ui-done", False, "English")  # never overwrites unasked
    assert status == "export failed" and "overwrite" in log.lower()
    status, log = ui.export("ui-done", "../outside", False, "中文")
    assert status == "导出失败" and "outside the folders" in log
