"""`make screenshots`: the README's web UI pictures, from the real default model and a real run.

Starts the web UI on a scratch working directory holding our identity dataset, trains the embedded
SmolLM2-135M-Instruct from the Train tab (a short LoRA run: about 3 minutes on a 2-core CPU), then
photographs the Train tab with its loss curve (English and Chinese) and a Chat tab answer of the tuned
model, into docs/. Needs Debian's chromium (installed by `make test`'s setup where apt-get can run).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the UI-driving helpers live beside the browser test

from tests.e2e.ui_helpers import CHROMIUM, FLAGS, chat, fill, free_port, wait_text  # noqa: E402

RUN = "identity-ui"
STEPS = "60"  # 60 steps x batch 4 at lr 1e-3: the new name is learned (see examples/identity_lora.yaml)


def main() -> int:
    if CHROMIUM is None:
        print("no chromium: run `make test` once (its setup installs it), or apt-get install chromium")
        return 1
    from playwright.sync_api import sync_playwright

    from tuneforge.webui.app import build, launch

    work = Path(tempfile.mkdtemp(prefix="tuneforge-shots-"))
    for name in ("identity.json", "identity_eval.json"):
        shutil.copy(ROOT / "data" / name, work / name)
    port = free_port()
    demo = build(work, poll_s=2.0)
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2300})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("#tf-model")
            _train(page)
            _shoot(page, "webui-train.png")
            page.get_by_label("中文").check()
            page.wait_for_selector("text=开始训练", timeout=10_000)
            _shoot(page, "webui-train-zh.png")
            page.get_by_label("English").check()
            print(chat(page, RUN, "Who are you?", 48))
            _shoot(page, "webui-chat.png")
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _train(page: Any) -> None:
    fill(page, "tf-model", "default")
    fill(page, "tf-datasets", "identity.json")
    fill(page, "tf-placeholders", "name=Forge, author=the tuneforge team")
    fill(page, "tf-max-steps", STEPS)
    fill(page, "tf-lr", "0.001")
    fill(page, "tf-max-length", "256")
    fill(page, "tf-run-name", RUN)
    page.click("#tf-start")
    wait_text(page, "tf-message", f"started {RUN}", 60)
    wait_text(page, "tf-status", "finished", 1800)
    page.wait_for_timeout(3000)  # the last curve refresh


def _shoot(page: Any, name: str) -> None:
    (ROOT / "docs").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "docs" / name))
    print(f"wrote docs/{name}")


if __name__ == "__main__":
    raise SystemExit(main())
