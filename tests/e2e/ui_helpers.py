"""Driving the web UI in headless Chromium: shared by the browser test and ``make screenshots``."""

from __future__ import annotations

import shutil
import socket
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Chromium as root, offline: no sandbox, no background connections (they are refused here anyway).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(page: Any, elem_id: str, value: str) -> None:
    """Type into a gradio textbox/number by its elem_id."""
    page.locator(f"#{elem_id}").locator("textarea, input").first.fill(value)


def value(page: Any, elem_id: str) -> str:
    """A gradio textbox's current value."""
    return page.locator(f"#{elem_id}").locator("textarea, input").first.input_value()


def wait_text(page: Any, elem_id: str, text: str, timeout_s: float, start: bool = False) -> None:
    """Wait until a textbox's value contains (or starts with) ``text``."""
    test = "startsWith" if start else "includes"
    page.wait_for_function(f"(() => {{ const e = document.querySelector('#{elem_id} textarea, #{elem_id} input'); "
                           f"return !!e && e.value.{test}({text!r}); }})()", timeout=timeout_s * 1000)


def chat(page: Any, model: str, question: str, max_new: int) -> str:
    """Ask ``question`` in the Chat tab and return the chat box's text once the answer stops growing."""
    page.get_by_role("tab", name="对话").or_(page.get_by_role("tab", name="Chat")).first.click()
    fill(page, "tf-chat-model", model)
    page.keyboard.press("Escape")
    page.locator("#tf-max-new input[type=number]").fill(str(max_new))
    page.locator("#tf-max-new input[type=number]").press("Enter")
    fill(page, "tf-chat-msg", question)
    page.click("#tf-send")
    page.wait_for_function("(() => { const b = document.querySelector('#tf-chatbot'); "
                           f"return b && b.innerText.includes({question!r}) && b.innerText.length > "
                           f"{len(question) + 10}; }})()", timeout=300_000)
    text = ""
    while text != (text := page.locator("#tf-chatbot").inner_text()):  # until the answer stops growing
        page.wait_for_timeout(1500)
    return text
