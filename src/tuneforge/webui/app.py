"""``tuneforge webui``: a gradio UI over the same commands (Train, Evaluate, Chat, Export), English/中文.

The UI never trains, evaluates or exports in its own process: it writes a config and runs the CLI in a
subprocess, reading the run folder for curves and logs. Only Chat loads a model here, through the same
inference engine as ``tuneforge chat``. Paths typed into the UI are confined by :class:`PathGuard`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config.catalog import METHOD_NAMES, STAGE_NAMES
from tuneforge.models.loading import trained_folder
from tuneforge.utils.errors import TuneforgeError
from tuneforge.webui.i18n import LANGUAGES, TEXT, t
from tuneforge.webui.paths import PathGuard
from tuneforge.webui.runs import CLI, RunManager, TrainForm, build_config

STAGES = list(STAGE_NAMES)
METHODS = list(METHOD_NAMES)
ADVISED = {"training.learning_rate": "learning_rate", "training.epochs": "epochs", "training.batch_size": "batch_size",
           "training.gradient_accumulation": "gradient_accumulation", "method.lora.rank": "lora_rank"}
SERIES_COLORS = {"train": "#1f77b4", "eval": "#ff7f0e"}
FORM_FIELDS = ["model", "datasets", "registry", "stage", "method", "learning_rate", "epochs", "max_steps",
               "batch_size", "gradient_accumulation", "max_length", "lora_rank", "run_name", "placeholders"]


@dataclass
class Labels:
    """Components whose text follows the language switch: (component, text key, attribute)."""

    items: list[tuple[Any, str, str]] = field(default_factory=list)

    def add(self, component: Any, key: str, attr: str = "label") -> Any:
        """Register ``component`` (returned unchanged) whose ``attr`` shows the text ``key``."""
        self.items.append((component, key, attr))
        return component

    def updates(self, language: str) -> list[Any]:
        """One update per registered component: its text in ``language`` ('English' or '中文')."""
        import gradio as gr

        lang = LANGUAGES.get(language, "en")
        return [gr.update(**{attr: TEXT[key][lang]}) for _, key, attr in self.items]


def run_cli(args: list[str], cwd: Path, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """A ``tuneforge`` command in a subprocess (never in the UI's process)."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "110", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def ansi_to_html(text: str) -> str:
    """Colored terminal output (rich) as an HTML fragment."""
    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, width=110, file=io.StringIO(), force_terminal=True)
    console.print(Text.from_ansi(text))
    return console.export_html(inline_styles=True, code_format="<pre style='white-space:pre-wrap;font-size:13px'>"
                                                               "{code}</pre>")


class WebUI:
    """The handlers behind the components, over one working directory."""

    def __init__(self, workdir: str | Path, data_dirs: list[str] | None = None) -> None:
        self.guard = PathGuard(workdir, data_dirs)
        self.runs = RunManager(self.guard.workdir)
        self._engines: dict[str, Any] = {}

    # ----- Train tab
    def form(self, *values: Any) -> TrainForm:
        """The Train tab's field values (in ``FORM_FIELDS`` order) as a form."""
        return TrainForm(**dict(zip(FORM_FIELDS, values, strict=True)))

    def draft(self, *values: Any) -> Path:
        """The form as a config file for recommend / estimate / inspect (``webui/_draft.yaml``)."""
        return self.runs.write_config(build_config(self.form(*values), self.guard, self.runs.runs_dir), "_draft")

    def registry_choices(self) -> list[str]:
        """Every entry of the ``dataset_info.json`` files in the allowed folders, as "name @ file"."""
        out = []
        for info in self.guard.dataset_infos():
            names = json.loads(info.read_text(encoding="utf-8"))
            rel = os.path.relpath(info, self.guard.workdir)
            out += [f"{name} @ {rel}" for name in names]
        return out

    def recommend(self, *values: Any) -> list[Any]:
        """Advised values into the form, and the advice table (key, value, reason)."""
        import gradio as gr

        try:
            proc = run_cli(["recommend", str(self.draft(*values)), "--json"], self.guard.workdir)
        except TuneforgeError as exc:
            return [gr.update()] * len(ADVISED) + [[], str(exc)]
        if proc.returncode:
            return [gr.update()] * len(ADVISED) + [[], _tail(proc.stderr or proc.stdout)]
        advice = json.loads(proc.stdout)["advice"]
        by_key = {a["key"]: a["value"] for a in advice}
        fills = [gr.update(value=by_key[k]) if by_key.get(k) is not None else gr.update() for k in ADVISED]
        table = [[a["key"], _short(a["value"]), a["reason"]] for a in advice]
        return [*fills, table, ""]

    def estimate(self, *values: Any) -> str:
        """Parameters, memory and steps (no timing probe: it would train a few steps)."""
        try:
            proc = run_cli(["estimate", str(self.draft(*values)), "--json", "--no-probe"], self.guard.workdir)
        except TuneforgeError as exc:
            return str(exc)
        if proc.returncode:
            return _tail(proc.stderr or proc.stdout)
        est = json.loads(proc.stdout)
        memory = ", ".join(f"{k} {v:.2f}" for k, v in est["memory_gib"].items())
        return (f"parameters {est['params']:,} (trainable {est['trainable_params']:,}); "
                f"{est['n_train']} examples, {est['tokens']:,} tokens, {est['steps']['total']} steps "
                f"({est['epochs']} epochs); memory GiB: {memory}; available {est['available_gib']} GiB")

    def preview(self, *values: Any) -> str:
        """One example through the template: trained tokens green, masked ones dim."""
        try:
            proc = run_cli(["data", "inspect", str(self.draft(*values)), "-n", "1"], self.guard.workdir)
        except TuneforgeError as exc:
            return f"<pre>{_escape(str(exc))}</pre>"
        return ansi_to_html(proc.stdout + (proc.stderr if proc.returncode else ""))

    def start(self, lang: str, *values: Any) -> tuple[str, Any]:
        """Launch training from the form; a message and the run list with the new run selected."""
        import gradio as gr

        code = LANGUAGES.get(lang, "en")
        try:
            launch = self.runs.start(build_config(self.form(*values), self.guard, self.runs.runs_dir))
        except TuneforgeError as exc:
            return str(exc), gr.update()
        message = t("started", code, name=launch.name, pid=launch.pid, config=os.path.relpath(launch.config,
                                                                                               self.guard.workdir))
        return message, gr.update(choices=self.runs.names(), value=launch.name)

    def stop(self, lang: str, name: str | None) -> str:
        """Send Ctrl-C to the selected run; a message saying what happened."""
        code = LANGUAGES.get(lang, "en")
        if not name:
            return t("no_run", code)
        return t("stopping", code, name=name) if self.runs.stop(name) else t("not_running", code, name=name)

    def watch(self, lang: str, name: str | None, shown: list[Any] | None) -> list[Any]:
        """Status, loss and perplexity curves, and the log tail of a run (called by the timer).

        ``shown`` (per browser session) holds what the page shows already: unchanged parts are skipped,
        so the plots are not redrawn every tick, while a reloaded page (a new session) gets everything.
        """
        import gradio as gr

        if not name:
            values: list[Any] = ["", [], [], ""]
        else:
            code = LANGUAGES.get(lang, "en")
            status = self.runs.status(name)
            curves = self.runs.curves(name)
            label = t(status, code) if status in TEXT else status
            values = [f"{name}: {label}", curves["loss"], curves["ppl"], self.runs.log_tail(name)]
        shown = shown or [None] * len(values)
        out = [gr.skip() if old == new else (_frame(new) if i in (1, 2) else new)
               for i, (old, new) in enumerate(zip(shown, values, strict=True))]
        return [*out, values]

    def run_list(self) -> Any:
        """The run dropdown: every run, the running (or newest) one selected."""
        import gradio as gr

        return gr.update(choices=self.runs.names(), value=self.runs.current())

    def restore(self) -> list[Any]:
        """The Train form of the run a (re)loaded page attaches to, as it was started."""
        import gradio as gr

        name = self.runs.current()
        form = self.runs.form(name) if name else None
        if form is None:
            return [gr.skip()] * len(FORM_FIELDS)
        return [gr.update(value=getattr(form, f)) for f in FORM_FIELDS]

    def lists(self) -> list[Any]:
        """Fresh run lists for every tab; the Train tab's run is the running (or newest) one."""
        import gradio as gr

        names = self.runs.names()
        return [self.run_list(), gr.update(choices=names), gr.update(choices=names),
                gr.update(choices=["default", *names])]

    def run_path(self, name: str) -> Path:
        """A run picked (or typed) in a dropdown: a known run, else a folder the guard allows."""
        if name in self.runs.names():
            return self.runs.run_dir(name)
        return self.guard.resolve(name, "run")

    # ----- Evaluate tab
    def evaluate(self, name: str | None, max_samples: int) -> tuple[list[list[str]], list[list[str]], str]:
        """``tuneforge eval`` on a run: the base-vs-tuned table, sample predictions and the verdict."""
        from tuneforge.evaluation.report import table_rows

        if not name:
            return [], [], t("no_run")
        try:
            run = self.run_path(name)
        except TuneforgeError as exc:
            return [], [], str(exc)
        try:
            trained_folder(str(run))  # the shared check: a run folder must hold its final model
        except TuneforgeError:
            return [], [], t("no_model", name=name, status=self.runs.status(name))
        out = run / "eval-webui"
        proc = run_cli(["eval", str(run), "--out", str(out), f"evaluation.max_samples={int(max_samples)}"],
                       self.guard.workdir)
        if proc.returncode or not (out / "metrics.json").is_file():
            return [], [], _tail(proc.stderr or proc.stdout)
        summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        header, rows = table_rows(summary["metrics"], summary.get("judge", {}))
        preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()[:5]]
        samples = [[p.get("prompt", ""), p.get("reference", ""), p.get("base_answer", ""), p.get("tuned_answer", "")]
                   for p in preds]
        return [header, *rows], samples, "\n".join(summary.get("verdict", []))

    # ----- Chat tab
    def engine(self, typed: str) -> Any:
        """The chat engine of a run or model (one kept loaded at a time)."""
        from tuneforge.inference import Engine

        name = typed.strip() or "default"
        path = str(self.runs.run_dir(name)) if name in self.runs.names() else self.guard.model(name)
        if path not in self._engines:
            self._engines.clear()  # one chat model in memory at a time
            self._engines[path] = Engine.load(path)
        return self._engines[path]

    def chat(self, message: str, history: list[dict[str, str]], model: str, temperature: float, max_new: int,
             system: str) -> Iterator[tuple[list[dict[str, str]], list[dict[str, str]], str]]:
        """Stream the answer into the chat history."""
        from tuneforge.data.records import Message
        from tuneforge.inference.engine import GenerationOptions

        if not message.strip():
            yield history, history, ""
            return
        history = [*history, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        try:
            engine = self.engine(model)
        except TuneforgeError as exc:
            history[-1]["content"] = str(exc)
            yield history, history, ""
            return
        turns = [Message(m["role"], m["content"]) for m in history[:-1]]
        options = GenerationOptions(max_new_tokens=int(max_new), temperature=float(temperature))
        for piece in engine.stream(turns, options, system or ""):
            history[-1]["content"] += piece
            yield history, history, ""

    # ----- Export tab
    def export(self, name: str | None, out: str, overwrite: bool, lang: str) -> tuple[str, str]:
        """``tuneforge export`` of a run into ``out``: a status line and the verification output."""
        code = LANGUAGES.get(lang, "en")
        if not name:
            return t("no_run", code), ""
        try:
            run, target = self.run_path(name), self.guard.resolve(out, "export_out", must_exist=False)
        except TuneforgeError as exc:
            return t("export_failed", code), str(exc)
        args = ["export", str(run), "--out", str(target)] + (["--overwrite"] if overwrite else [])
        proc = run_cli(args, self.guard.workdir)
        text = _strip_ansi(proc.stdout + proc.stderr)
        return (t("export_ok", code) if proc.returncode == 0 else t("export_failed", code)), text


def _frame(points: list[dict[str, Any]]) -> Any:
    """Curve points as the plot's table; None (an empty plot) when there are none yet.

    An empty table would fix the plot's encoding before any data arrives, and gradio 6 then draws no
    lines for the data that follows; None keeps the plot unset until the first point.
    """
    import pandas as pd

    return pd.DataFrame(points, columns=["step", "value", "series"]) if points else None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _tail(text: str, lines: int = 25) -> str:
    return _strip_ansi("\n".join(text.splitlines()[-lines:]))


def _strip_ansi(text: str) -> str:
    from rich.text import Text

    return Text.from_ansi(text).plain


def _escape(text: str) -> str:
    import html

    return html.escape(text)


#: the log and the preview keep their columns (tables drawn with box characters)
CSS = "#tf-log textarea { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; }"


def launch(demo: Any, **kwargs: Any) -> None:
    """Start a built UI with tuneforge's style (``kwargs`` go to gradio's ``launch``)."""
    demo.launch(css=CSS, **kwargs)


def build(workdir: str | Path = ".", data_dirs: list[str] | None = None, poll_s: float = 2.0) -> Any:
    """The gradio Blocks app (``launch()`` it, or mount it)."""
    import gradio as gr

    ui, labels = WebUI(workdir, data_dirs), Labels()
    L = labels.add  # noqa: N806 - reads as a label marker in the layout below
    with gr.Blocks(title="tuneforge") as demo:
        with gr.Row():
            L(gr.Markdown(t("title")), "title", "value")
            lang = L(gr.Radio(list(LANGUAGES), value="English", label=t("language"), elem_id="tf-lang"), "language")
        with gr.Tabs():
            with L(gr.Tab(t("tab_train"), id="train"), "tab_train"):
                with gr.Row():
                    model = L(gr.Textbox("default", label=t("model"), elem_id="tf-model"), "model")
                    datasets = L(gr.Textbox(label=t("datasets"), elem_id="tf-datasets"), "datasets")
                    registry = L(gr.Dropdown(ui.registry_choices(), multiselect=True, label=t("registry")),
                                 "registry")
                with gr.Row():
                    stage = L(gr.Dropdown(STAGES, value=STAGES[0], label=t("stage")), "stage")
                    method = L(gr.Dropdown(METHODS, value=METHODS[0], label=t("method")), "method")
                    run_name = L(gr.Textbox("webui-run", label=t("run_name"), elem_id="tf-run-name"), "run_name")
                with gr.Row():
                    lr = L(gr.Number(None, label=t("learning_rate"), elem_id="tf-lr"), "learning_rate")
                    epochs = L(gr.Number(None, label=t("epochs")), "epochs")
                    max_steps = L(gr.Number(None, precision=0, label=t("max_steps"), elem_id="tf-max-steps"),
                                  "max_steps")
                    batch = L(gr.Number(None, precision=0, label=t("batch_size")), "batch_size")
                    accum = L(gr.Number(None, precision=0, label=t("gradient_accumulation")), "gradient_accumulation")
                    max_len = L(gr.Number(512, precision=0, label=t("max_length"), elem_id="tf-max-length"), "max_length")
                    rank = L(gr.Number(None, precision=0, label=t("lora_rank")), "lora_rank")
                placeholders = L(gr.Textbox(label=t("placeholders"), elem_id="tf-placeholders"), "placeholders")
                fields = [model, datasets, registry, stage, method, lr, epochs, max_steps, batch, accum, max_len, rank,
                          run_name, placeholders]
                with gr.Row():
                    recommend_btn = L(gr.Button(t("recommend"), elem_id="tf-recommend"), "recommend", "value")
                    estimate_btn = L(gr.Button(t("estimate")), "estimate", "value")
                    preview_btn = L(gr.Button(t("preview")), "preview", "value")
                    start_btn = L(gr.Button(t("start"), variant="primary", elem_id="tf-start"), "start", "value")
                    stop_btn = L(gr.Button(t("stop"), variant="stop", elem_id="tf-stop"), "stop", "value")
                message = gr.Textbox(show_label=False, interactive=False, elem_id="tf-message", lines=2)
                advice = L(gr.Dataframe(headers=["key", "value", "reason"], label=t("advice"), wrap=True, elem_id="tf-advice"),
                           "advice")
                estimate_out = L(gr.Textbox(label=t("estimate_out"), interactive=False), "estimate_out")
                preview_out = gr.HTML()
                with gr.Row():
                    run = L(gr.Dropdown(ui.runs.names(), value=ui.runs.current(), label=t("run"),
                                        allow_custom_value=True, elem_id="tf-run"), "run")
                    refresh = L(gr.Button(t("refresh")), "refresh", "value")
                    status = L(gr.Textbox(label=t("status"), interactive=False, elem_id="tf-status"), "status")
                with gr.Row():
                    loss_plot = L(gr.LinePlot(x="step", y="value", color="series", label=t("loss_plot"),
                                              color_map=SERIES_COLORS, elem_id="tf-loss-plot"), "loss_plot")
                    ppl_plot = L(gr.LinePlot(x="step", y="value", color="series", label=t("ppl_plot"),
                                             color_map=SERIES_COLORS), "ppl_plot")
                log = L(gr.Textbox(label=t("log"), lines=12, max_lines=30, interactive=False, elem_id="tf-log"), "log")
            with L(gr.Tab(t("tab_eval"), id="eval"), "tab_eval"):
                with gr.Row():
                    eval_run = L(gr.Dropdown(ui.runs.names(), label=t("run"), allow_custom_value=True), "run")
                    max_samples = L(gr.Number(20, precision=0, label=t("max_samples")), "max_samples")
                    eval_btn = L(gr.Button(t("evaluate"), variant="primary"), "evaluate", "value")
                eval_table = L(gr.Dataframe(label=t("eval_table")), "eval_table")
                verdict = gr.Textbox(show_label=False, interactive=False)
                samples = L(gr.Dataframe(headers=["prompt", "reference", "base", "tuned"], label=t("samples"),
                                         wrap=True), "samples")
            with L(gr.Tab(t("tab_chat"), id="chat"), "tab_chat"):
                with gr.Row():
                    chat_model = L(gr.Dropdown(["default", *ui.runs.names()], value="default", label=t("chat_model"),
                                               allow_custom_value=True, elem_id="tf-chat-model"), "chat_model")
                    temperature = L(gr.Slider(0, 1.5, value=0.7, label=t("temperature")), "temperature")
                    max_new = L(gr.Slider(8, 1024, value=256, step=8, label=t("max_new_tokens"), elem_id="tf-max-new"),
                                "max_new_tokens")
                system = L(gr.Textbox(label=t("system")), "system")
                chatbot = L(gr.Chatbot(label=t("tab_chat"), elem_id="tf-chatbot", height=360), "tab_chat")
                history = gr.State([])
                with gr.Row():
                    chat_msg = L(gr.Textbox(label=t("message"), scale=4, elem_id="tf-chat-msg"), "message")
                    send = L(gr.Button(t("send"), variant="primary", elem_id="tf-send"), "send", "value")
                    clear = L(gr.Button(t("clear")), "clear", "value")
            with L(gr.Tab(t("tab_export"), id="export"), "tab_export"):
                with gr.Row():
                    export_run = L(gr.Dropdown(ui.runs.names(), label=t("run"), allow_custom_value=True), "run")
                    export_out = L(gr.Textbox("exported/model", label=t("export_out")), "export_out")
                    overwrite = L(gr.Checkbox(False, label=t("overwrite")), "overwrite")
                    export_btn = L(gr.Button(t("export"), variant="primary"), "export", "value")
                export_status = gr.Textbox(show_label=False, interactive=False)
                export_log = L(gr.Textbox(label=t("export_result"), lines=8, interactive=False), "export_result")

        recommend_btn.click(ui.recommend, fields, [lr, epochs, batch, accum, rank, advice, message])
        estimate_btn.click(ui.estimate, fields, estimate_out)
        preview_btn.click(ui.preview, fields, preview_out)
        start_btn.click(ui.start, [lang, *fields], [message, run])
        stop_btn.click(ui.stop, [lang, run], message)
        shown = gr.State(None)
        watch_outputs = [status, loss_plot, ppl_plot, log, shown]
        refresh.click(ui.run_list, None, run)
        run.change(ui.watch, [lang, run, gr.State(None)], watch_outputs, show_progress="hidden")
        gr.Timer(poll_s).tick(ui.watch, [lang, run, shown], watch_outputs, show_progress="hidden")
        eval_btn.click(ui.evaluate, [eval_run, max_samples], [eval_table, samples, verdict])
        chat_args: tuple[Callable[..., Any], list[Any], list[Any]] = (
            ui.chat, [chat_msg, history, chat_model, temperature, max_new, system], [chatbot, history, chat_msg])
        send.click(*chat_args)
        chat_msg.submit(*chat_args)
        clear.click(lambda: ([], []), None, [chatbot, history])
        export_btn.click(ui.export, [export_run, export_out, overwrite, lang], [export_status, export_log])
        lang.change(labels.updates, lang, [c for c, _, _ in labels.items])
        # a (re)loaded page re-attaches to the running (or newest) run and shows the form it was started with
        demo.load(ui.lists, None, [run, eval_run, export_run, chat_model]).then(ui.restore, None, fields)
    return demo
