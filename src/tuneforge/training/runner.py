"""The one training path: data -> advice -> model -> method -> Trainer -> saved model, report, plots."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import set_seed

from tuneforge.advice.recommend import recommend, step_warnings, total_steps
from tuneforge.config.catalog import method_spec
from tuneforge.config.schema import RunConfig
from tuneforge.data.templates import ChatTemplate, resolve_template
from tuneforge.data.templates.check import template_warnings
from tuneforge.distributed import world
from tuneforge.distributed.strategies import STRATEGIES, global_batch
from tuneforge.distributed.support import check_distributed
from tuneforge.evaluation import forgetting
from tuneforge.models.loading import load_tokenizer, resolve_model
from tuneforge.models.tuning import TUNING, trainable_summary
from tuneforge.training import data as training_data
from tuneforge.training.allocator import configure_allocator
from tuneforge.training.callbacks import Interrupt, JsonlLogger, NanGuard, Progress
from tuneforge.training.precision import Precision, choose_precision
from tuneforge.training.report import plot_curves, read_log, write_report
from tuneforge.training.rundir import RunDir, open_run
from tuneforge.training.stages import STAGES
from tuneforge.training.trackers import close_all, open_trackers, summary_metrics
from tuneforge.utils.errors import ConfigError, DataError, Problem, TuneforgeError

Echo = Callable[[str], None]
#: Length of the base model's own answers used as replay data (short answers keep replay cheap).
REPLAY_MAX_NEW_TOKENS = 128


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    run: RunDir
    interrupted: bool
    steps: int
    final_loss: float | None
    report: Path | None = None
    plots: list[Path] = field(default_factory=list)
    model: Any = None  # the trained model in memory (tests and multi-stage runs use it)
    tokens: int = 0  # input tokens (no padding) processed by this invocation's training loop
    train_seconds: float = 0.0  # wall time of the training loop
    evaluation: Any = None  # EvalResult of the automatic base-vs-tuned evaluation, when it ran
    reference: Any = None  # a separate frozen reference model the stage trained against (full-tuning DPO, ...)


def train(cfg: RunConfig, config_path: str | None = None, overwrite: bool = False, echo: Echo = print,
          progress: bool = True, callbacks: list[Any] | None = None) -> TrainResult:
    """Train one stage as configured; resumes an unfinished run in the same folder.

    ``callbacks`` are extra ``TrainerCallback`` objects (the search uses one to report and prune).

    The same function runs in every worker of a distributed run (docs/distributed.md): rank 0 opens the
    run folder, prepares the data, speaks and writes; the other ranks get both from it, train, take part
    in checkpoints and the final save, and return without a report (``TrainResult.report`` None).

    Raises:
        TuneforgeError: bad config or data, a finished run in the way, a NaN loss, no disk space.
    """
    stage = _stage(cfg)
    strategy = check_distributed(cfg, stage)
    world.start(cfg.distributed.timeout)
    _set_threads(cfg)
    main = world.is_main()
    say: Echo = echo if main else (lambda m: None)  # one voice: rank 0 speaks for every process
    run, resuming = world.on_main(lambda: open_run(cfg, config_path, overwrite))
    mark = run.set_state if main else (lambda *a, **k: None)  # one writer of the run's status
    say(f"run: {run.root}" + ("  (resuming from " + str(run.last_checkpoint()) + ")" if resuming else ""))
    for line in stage.ignored_settings(cfg):
        say(f"warning: {line}")
    precision = choose_precision(cfg.training.precision)
    say(f"precision: {precision.name} on {precision.device} ({precision.reason})")
    _set_allocator(cfg, precision, say)
    if world.world_size() > 1:
        say(f"distributed: {strategy.name}, {world.world_size()} processes ({cfg.distributed.nnodes} machine(s))")
    base = resolve_model(cfg.model.name_or_path, cfg.model.gguf_file)
    tokenizer = load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code)
    template = _template(cfg, tokenizer, stage)
    for w in template_warnings(template, tokenizer) if stage.uses_template else ():
        say(f"warning: {w.message}")
    method = TUNING.get(cfg.method.name)
    set_seed(cfg.training.seed)  # new heads (a reward model's score layer) start the same in every run
    model = _load_model(base, cfg, precision, method, stage)
    _check_context(cfg, model, method.logit_offset(cfg))
    say(f"weights: {_dtype_name(model)}" + (" (frozen base; the adapter trains in fp32)" if method.adapter else "")
        + f", attention {getattr(model.config, '_attn_implementation', '?')}")
    guarded = _guards_forgetting(cfg, stage, tokenizer)
    before = world.on_main(lambda: _probe_base(run, model, tokenizer, template)) if guarded else None
    # the data is read and tokenized once, by rank 0, and handed to the other ranks
    data = world.on_main(lambda: training_data.prepare(
        cfg, tokenizer, template, stage.name, _answerer(model, tokenizer, template),
        process=lambda examples, opts: stage.prepare_data(cfg, examples, opts)))
    data_warnings = [Problem(**w).render() for w in data.report["warnings"]]
    for line in data_warnings:
        say(f"warning: {line}")
    n_rows, n_eval = stage.planned_rows(data.train, data.eval)
    cfg, advice = recommend(cfg, n_rows, sum(p.numel() for p in model.parameters()),
                            precision.device == "cuda", n_eval=n_eval)
    cfg, stage_advice = stage.defaults(cfg, data.train.columns)
    cfg, layout_advice = _method_layout(cfg, precision.device == "cuda")
    advice_lines = [a.line() for a in advice] + stage_advice + layout_advice
    for line in advice_lines:
        say(f"advice: {line}")
    for w in step_warnings(cfg, n_rows):
        say(f"warning: {w}")
    if main:
        _write_inputs(run, cfg, data.report, advice_lines, strategy.training_args(cfg, precision.name,
                                                                                  world.world_size()))
    set_seed(cfg.training.seed)  # adapter initialisation is random: same seed, same run
    model = stage.after_method(method.apply(model, cfg))
    if not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False):
        trainable_in_fp32(model)  # quantized bases: the trainers' own casts apply (RunTrainerMixin)
    counts = trainable_summary(model)
    say(f"method: {cfg.method.name}, trainable parameters {counts['trainable']:,} of {counts['total']:,}")
    trackers = open_trackers(cfg.output.report_to, run.root, Path(cfg.output.dir), cfg.output.project,
                             cfg.model_dump(mode="json")) if main else []
    with _tracking(trackers, say) as track:
        trainer, guard, interrupt = _build_trainer(cfg, run, model, tokenizer, data, precision, stage,
                                                   progress and main, trackers)
        for callback in method.callbacks(model, cfg) + list(callbacks or []):
            trainer.add_callback(callback)
        trainer.regularizer = method.regularizer
        trainer.logit_offset = method.logit_offset(cfg)
        mark("running", base_model=base)
        started = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=run.last_checkpoint() if resuming else None)
            guard.raise_if_tripped(run.last_checkpoint())
        except Exception:
            mark("failed", step=trainer.state.global_step)
            raise
        seconds = time.perf_counter() - started
        train_rows, _ = read_log(run.log)
        final_loss = train_rows[-1]["loss"] if train_rows else None
        if interrupt.requested:
            mark("interrupted", step=trainer.state.global_step)
            say(f"interrupted: checkpoint saved at step {trainer.state.global_step}; run the same command to resume")
            return TrainResult(run, True, trainer.state.global_step, final_loss, model=trainer.model,
                               tokens=trainer.tokens_seen, train_seconds=seconds)
        _save_final(trainer, run, tokenizer, template if stage.uses_template else None, cfg, base, stage.name,
                    method.adapter, stage.saved_meta(cfg))
        if not main:
            return TrainResult(run, False, trainer.state.global_step, final_loss, tokens=trainer.tokens_seen,
                               train_seconds=seconds)
        plots = plot_curves(run.log, run.plots, stage.metrics)
        summary = {"stage": stage.name, "method": cfg.method.name, "base model": base, "steps": trainer.state.global_step,
                   "final train loss": final_loss, "precision": f"{precision.name} ({precision.reason})",
                   "trainable parameters": f"{counts['trainable']:,} of {counts['total']:,}",
                   "training rows": n_rows, "model": str(run.model), **_layout(cfg)}
        report = write_report(run.root, run.log, summary, advice_lines, plots, stage.metrics, stage.surrogate_loss,
                              data_warnings)
        run.set_state("finished", step=trainer.state.global_step)
        tuned = trainer.model if strategy.name in ("none", "ddp") else None  # sharded weights: read the saved model
        strategy.release()
        evaluation = _auto_eval(cfg, run, tuned, tokenizer, template, data.test, base, stage, say)
        if before is not None:
            _forgetting(run, tuned, tokenizer, template, cfg, before, data.answers, say)
        track(evaluation)
        return TrainResult(run, False, trainer.state.global_step, final_loss, report, plots, trainer.model,
                           trainer.tokens_seen, seconds, evaluation, _reference(trainer))


@contextmanager
def _tracking(trackers: list[Any], say: Echo) -> Iterator[Callable[[Any], None]]:
    """Close every tracker when the run ends (failed if it raised); yields a function that logs the
    held-out evaluation to them."""
    def record(evaluation: Any) -> None:
        metrics = summary_metrics(evaluation)
        for tracker in trackers:
            if metrics:
                tracker.log_summary(metrics)

    try:
        yield record
    except BaseException:
        for _ in close_all(trackers, ok=False):
            pass
        raise
    for line in close_all(trackers, ok=True):
        say(f"tracker {line}")


def _check_context(cfg: RunConfig, model: Any, extra: int) -> None:
    """Refuse a ``data.max_length`` (plus virtual tokens) beyond the positions the base model was trained on.

    Past ``max_position_embeddings`` rotary and learned position embeddings are extrapolated: the model is
    trained on positions it never saw, and its loss there says little (docs/data.md, "Length").
    """
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    context = getattr(text, "max_position_embeddings", None)
    need = cfg.data.max_length + extra
    if isinstance(context, int) and need > context:
        virtual = f" + {extra} virtual tokens" if extra else ""
        raise ConfigError("sequences longer than the model's context", [Problem(
            f"data.max_length {cfg.data.max_length}{virtual} = {need} positions, but {type(model).__name__} supports "
            f"{context} (max_position_embeddings)", field="data.max_length",
            fix=f"set data.max_length to at most {context - extra}, or use a base model with a longer context")])


def _method_layout(cfg: RunConfig, on_gpu: bool) -> tuple[RunConfig, list[str]]:
    """Padded batches on GPU for a method that adds positions to every sequence (``MethodSpec.packs``).

    A padding-free row on GPU is one sequence to peft's prompt-learning forward, which puts its virtual
    tokens once in front of the whole row and drops the per-sequence positions. On CPU each sequence of a
    row runs alone (``TuneforgeTrainer._pieces``), so the row layout stays.
    """
    if not on_gpu or not cfg.training.padding_free or method_spec(cfg.method.name).packs:
        return cfg, []
    cfg = cfg.model_copy(deep=True)
    cfg.training.padding_free = False
    return cfg, [f"training.padding_free = False  (method {cfg.method.name} puts virtual tokens in front of every "
                 "sequence, which GPU padding-free rows cannot carry: batches are padded)"]


def _layout(cfg: RunConfig) -> dict[str, Any]:
    """How the work was divided, for the report: processes and the global batch."""
    n = world.world_size()
    t = cfg.training
    out: dict[str, Any] = {"global batch": f"{global_batch(cfg, n)} examples per optimizer step "
                                           f"({t.batch_size} per device x {t.gradient_accumulation} accumulated"
                                           f" x {n} process{'es' if n > 1 else ''})"}
    if n > 1:
        out["distributed"] = f"{cfg.distributed.strategy}, {n} processes on {cfg.distributed.nnodes} machine(s)"
    return out


def _auto_eval(cfg: RunConfig, run: RunDir, model: Any, tokenizer: Any, template: ChatTemplate, test: list[Any],
               base: str, stage: Any, echo: Echo) -> Any:
    """Base vs tuned on the test split (or evaluation.file) right after training, into eval/ and report.md."""
    from tuneforge.evaluation.evaluate import evaluate_engine
    from tuneforge.evaluation.held_out import EVALUATORS
    from tuneforge.evaluation.report import add_to_run_report
    from tuneforge.evaluation.sources import eval_items, items_from_examples

    e = cfg.evaluation
    if e.auto and stage.name in EVALUATORS:  # the saved copy where the trained object is a scorer or a wrapper
        return _stage_eval(cfg, run, model if stage.generates_in_memory else None, tokenizer, template, base, echo)
    if not e.auto or stage.name != "sft" or not (test or e.file):  # generation metrics need reference answers
        return None
    items = eval_items(cfg) if e.file else items_from_examples(test)[: e.max_samples]
    if not items:
        return None
    with _tuned_engine(run, model, tokenizer, template, cfg) as engine:
        result = evaluate_engine(cfg, engine, items, base, run.root / "eval", echo)
    md = next(p for p in result.files if p.name == "eval.md")
    add_to_run_report(run.root / "report.md", md.read_text(encoding="utf-8"), md.with_name("eval.png"))
    return result


def _stage_eval(cfg: RunConfig, run: RunDir, model: Any, tokenizer: Any, template: ChatTemplate, base: str,
                echo: Echo) -> Any:
    """A preference, reward, RL or classification run judged on held-out examples by its stage's metric, on
    ``evaluation.file`` when one is set (skipped: none held out).

    ``model`` None: the evaluation loads the saved run.
    """
    from tuneforge.evaluation.held_out import evaluate_stage, held_out
    from tuneforge.evaluation.report import add_to_run_report

    file = cfg.evaluation.file
    try:
        examples = None if file else held_out(cfg)  # read once, handed to the evaluation
    except DataError:
        echo("eval: no held-out split (data.split), so no held-out evaluation")
        return None
    with _tuned_engine(run, model, tokenizer, template, cfg) if model is not None else nullcontext() as engine:
        result = evaluate_stage(cfg, str(run.root), base, run.root / "eval", engine, file=file, echo=echo,
                                examples=examples)
    md = next(p for p in result.files if p.name == "eval.md")
    chart = next((p for p in result.files if p.suffix == ".png"), None)
    add_to_run_report(run.root / "report.md", md.read_text(encoding="utf-8"), chart)
    for line in result.verdict:
        echo(f"eval: {line}")
    return result


@contextmanager
def _tuned_engine(run: RunDir, model: Any, tokenizer: Any, template: ChatTemplate, cfg: RunConfig) -> Iterator[Any]:
    """The trained model ready to generate; ``model`` None (trained sharded): the saved complete copy."""
    from tuneforge.inference.engine import Engine

    if model is None:
        yield Engine.load(str(run.root), cfg.template.name, cfg.template.system)
        return
    with _generating(model):
        yield Engine(model, tokenizer, template)


@contextmanager
def _generating(model: Any) -> Iterator[None]:
    """Eval mode with the KV cache for generation, then back to training mode."""
    model.config.use_cache = True
    model.eval()
    try:
        yield
    finally:  # a later stage may train this model further: padding-free attention needs use_cache off
        model.config.use_cache = False
        model.train()


def _guards_forgetting(cfg: RunConfig, stage: Any, tokenizer: Any) -> bool:
    """The forgetting guard runs after SFT and alignment runs of a chat model, unless turned off."""
    return cfg.evaluation.forgetting and stage.policy and stage.forgetting_guard and bool(
        getattr(tokenizer, "chat_template", None))


def _probe_base(run: RunDir, model: Any, tokenizer: Any, template: ChatTemplate) -> forgetting.Snapshot:
    """The base model's side of the guard, measured once per run (a resumed run reads it back)."""
    path = run.root / "eval" / "forgetting_base.json"
    saved = forgetting.load_snapshot(path)
    if saved is not None:
        return saved
    from tuneforge.inference.engine import Engine

    with _generating(model):
        snap = forgetting.snapshot(Engine(model, tokenizer, template), forgetting.load_probes())
    forgetting.save_snapshot(snap, path)
    return snap


def _forgetting(run: RunDir, model: Any, tokenizer: Any, template: ChatTemplate, cfg: RunConfig,
                before: forgetting.Snapshot, answers: list[str], echo: Echo) -> dict[str, Any]:
    """Tuned vs base on the general probes: eval/forgetting.json, a report section, console lines."""
    from tuneforge.evaluation.report import add_to_run_report

    probes = forgetting.load_probes()
    with _tuned_engine(run, model, tokenizer, template, cfg) as engine:
        after = forgetting.snapshot(engine, probes)
    report = forgetting.compare(probes, before, after, answers)
    forgetting.write(report, run.root / "eval")
    add_to_run_report(run.root / "report.md", forgetting.markdown(report), tag="forgetting")
    for line in forgetting.summary_lines(report):
        echo(f"forgetting: {line}")
    for w in report["warnings"]:
        echo(f"warning: {w}")
    return report


def _reference(trainer: Any) -> Any:
    """The separate reference model of a trainer, if it keeps one (TRL: ``ref_model``; PPO: ``reference``)."""
    return getattr(trainer, "ref_model", None) or getattr(trainer, "reference", None)


def _template(cfg: RunConfig, tokenizer: Any, stage: Any) -> ChatTemplate:
    """The training template; a stage that reads plain text (a classifier) accepts a tokenizer without one
    (BERT's): the template is then only a placeholder the shared path carries, never applied or saved."""
    try:
        return resolve_template(cfg.template.name, tokenizer, cfg.template.system)
    except ConfigError:
        if stage.uses_template or cfg.template.name != "auto":
            raise
        return resolve_template("chatml", tokenizer)


def _stage(cfg: RunConfig) -> Any:
    if cfg.training.stage not in STAGES:
        raise ConfigError("stage not available yet", [Problem(
            f"training.stage {cfg.training.stage!r} is not implemented yet", field="training.stage",
            fix=f"use one of: {', '.join(STAGES.names())}")])
    return STAGES.get(cfg.training.stage)


def _set_threads(cfg: RunConfig) -> None:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # processes on one machine share its cores; more threads than cores only adds switching
    torch.set_num_threads(cfg.training.threads or max(1, usable // world.local_world_size()))


def _set_allocator(cfg: RunConfig, precision: Precision, say: Echo) -> None:
    """``training.cpu_allocator`` (docs/performance.md, "Large blocks from the heap"); says what it did."""
    line = configure_allocator(cfg.training.cpu_allocator, precision.device)
    if line:
        say(line)


def _load_model(base: str, cfg: RunConfig, precision: Precision, method: Any, stage: Any) -> Any:
    """The base model, its weights in the dtype :func:`weights_dtype` picks."""
    import torch

    on_gpu = precision.device == "cuda"
    quant = method.quantization_config(cfg, precision.dtype if on_gpu else torch.float32)
    dtype = weights_dtype(precision, method.adapter, cfg.training.frozen_precision, quant is not None)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quant is not None:  # quantized weights are placed at load time: this process's own GPU
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": world.local_rank()} if on_gpu else {"": "cpu"}
    if cfg.model.device_map == "auto":  # layers spread over every GPU of this one process
        kwargs["device_map"] = "auto"
    model = _with_attention(lambda impl: stage.load_model(base, cfg, {**kwargs, "attn_implementation": impl}),
                            _attention(on_gpu))
    model.config.use_cache = False  # required for exact padding-free attention (see data/collators.py)
    if cfg.training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def weights_dtype(precision: Precision, adapter: bool, frozen: str, quantized: bool) -> Any:
    """The dtype the base model is loaded in (docs/performance.md, "Frozen weights in the compute precision").

    Weights that train (full, freeze) stay fp32 master weights. An adapter's base is frozen, so with
    ``frozen`` "auto" it is held in the compute dtype wherever training computes in bf16/fp16: autocast
    would otherwise cast every fp32 weight to bf16 at every matmul, reading twice the bytes and keeping
    both copies. A bitsandbytes base on a CPU keeps fp32 around its quantized layers, as measured there.
    """
    import torch

    if not adapter or frozen == "fp32" or precision.name == "fp32" or (quantized and precision.device == "cpu"):
        return torch.float32
    return precision.dtype


def _dtype_name(model: Any) -> str:
    return str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")


def trainable_in_fp32(model: Any) -> int:
    """Cast trainable half-precision parameters to fp32 (the optimizer's master weights); returns how many.

    peft keeps LoRA matrices in fp32 already; a new head that an adapter trains whole (a reward model's
    ``score``, peft's ``modules_to_save``) is created in the base's dtype, where AdamW's small updates
    would round away in bf16.
    """
    import torch

    cast = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()
            cast += 1
    return cast


def _with_attention(load: Callable[[str], Any], preferred: str) -> Any:
    """``load(preferred)``, falling back to SDPA, then eager attention, for architectures without the kernel.

    transformers refuses an implementation an architecture does not support (gemma2 has no SDPA path in
    5.24: its attention soft-caps the scores), so a family-agnostic first choice needs a fallback.
    """
    order = list(dict.fromkeys([preferred, "sdpa", "eager"]))
    for impl in order:
        try:
            return load(impl)
        except ValueError as err:
            if "attention implementation" not in str(err) or impl == order[-1]:
                raise
    raise AssertionError("unreachable")


def _attention(on_gpu: bool) -> str:
    """flash-attention 2 on CUDA when installed, else PyTorch SDPA."""
    if on_gpu:
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


def _answerer(model: Any, tokenizer: Any, template: ChatTemplate) -> training_data.Answerer:
    def answer(prompts: list[Any]) -> list[str]:
        from tuneforge.inference.engine import Engine, GenerationOptions

        with _generating(model):
            options = GenerationOptions(REPLAY_MAX_NEW_TOKENS, temperature=0.0, repetition_penalty=1.1)
            return Engine(model, tokenizer, template).generate_batch(prompts, options)

    return answer


def _write_inputs(run: RunDir, cfg: RunConfig, report: dict[str, Any], advice: list[str],
                  engine: dict[str, Any]) -> None:
    """The resolved config, the data report and, for DeepSpeed, the JSON it was given (as the user sees it)."""
    if "deepspeed" in engine:
        (run.root / "deepspeed.json").write_text(json.dumps(engine["deepspeed"], indent=2), encoding="utf-8")
    resolved = cfg.model_dump(mode="json")
    text = "# resolved config: every default filled in\n"
    text += "".join(f"# advice: {a}\n" for a in advice)
    (run.root / "config.yaml").write_text(text + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True),
                                          encoding="utf-8")
    (run.root / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


def _build_trainer(cfg: RunConfig, run: RunDir, model: Any, tokenizer: Any, data: Any, precision: Precision,
                   stage: Any, progress: bool, trackers: list[Any]) -> tuple[Any, NanGuard, Interrupt]:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from tuneforge.training.stages import StageInputs

    has_eval = data.eval is not None
    ref: list[Any] = []
    guard, interrupt = NanGuard(), Interrupt()
    callbacks: list[Any] = [guard, interrupt]
    if world.is_main():  # one run folder: only rank 0 writes the log and the trackers
        callbacks += [JsonlLogger(run.log, ref, stage.metrics), Progress(ref, progress)]
        callbacks += [t.callback(run.root) for t in trackers]
    callbacks += _early_stopping(cfg, has_eval)
    on_gpu = precision.device == "cuda"
    trainer = stage.build(StageInputs(
        cfg=cfg, model=model, tokenizer=tokenizer, args=_training_args(cfg, run, precision, has_eval),
        train=data.train.columns, eval=data.eval.columns if has_eval else None, callbacks=callbacks,
        flash=getattr(model.config, "_attn_implementation", None) == "flash_attention_2",
        adapter=TUNING.get(cfg.method.name).adapter))
    stage.configure(trainer, not on_gpu, cfg)
    ref.append(trainer)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, guard, interrupt


def _early_stopping(cfg: RunConfig, has_eval: bool) -> list[Any]:
    """Stop after ``early_stopping_patience`` evaluations without a better eval loss (needs evaluations)."""
    from transformers import EarlyStoppingCallback

    patience = cfg.training.early_stopping_patience
    return [EarlyStoppingCallback(early_stopping_patience=patience)] if patience and has_eval else []


def _training_args(cfg: RunConfig, run: RunDir, precision: Precision, has_eval: bool) -> dict[str, Any]:
    """``TrainingArguments`` keywords shared by every stage (TRL configs accept them too)."""
    t = cfg.training
    scheduler = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[t.scheduler]
    engine = STRATEGIES.get(cfg.distributed.strategy).training_args(cfg, precision.name, world.world_size())
    return engine | dict(
        output_dir=str(run.checkpoints), num_train_epochs=t.epochs or 1, max_steps=t.max_steps or -1,
        learning_rate=t.learning_rate, per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation,
        lr_scheduler_type=scheduler, warmup_steps=t.warmup_ratio or 0.0, weight_decay=t.weight_decay or 0.0,
        max_grad_norm=t.max_grad_norm, bf16=precision.name == "bf16", fp16=precision.name == "fp16",
        use_cpu=precision.device == "cpu", eval_strategy="steps" if has_eval else "no", eval_steps=t.eval_steps,
        eval_on_start=t.eval_on_start and has_eval,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps, seed=t.seed, data_seed=t.seed, report_to="none", disable_tqdm=True,
        remove_unused_columns=False, train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length", dataloader_num_workers=0, logging_nan_inf_filter=False,
        metric_for_best_model="eval_loss" if has_eval else None, greater_is_better=False if has_eval else None,
        load_best_model_at_end=t.keep_best and has_eval,
        gradient_checkpointing=False)  # enabled on the model itself, before any PEFT wrapping


def _save_final(trainer: Any, run: RunDir, tokenizer: Any, template: ChatTemplate | None, cfg: RunConfig, base: str,
                stage: str, adapter: bool, extra: dict[str, Any] | None = None) -> None:
    """The final adapter or model, with the tokenizer carrying the training chat template; ``extra``: the
    stage's own metadata (``Stage.saved_meta``)."""
    import shutil

    tmp = run.root / ".model.tmp"
    if world.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    world.barrier()
    _gather_full_state(trainer)
    trainer.save_model(str(tmp))  # every rank: sharded engines gather the weights; rank 0 writes them
    world.barrier()
    if not world.is_main():
        return
    _require_weights(tmp, adapter)
    if template is not None:  # chat, serve, eval and export render as training did (a classifier reads plain text)
        tokenizer.chat_template = template.source
    tokenizer.save_pretrained(str(tmp))
    meta = {"base_model": base, "stage": stage, "method": cfg.method.name, "adapter": adapter,
            "template": template.name if template else None, "system": cfg.template.system,
            "eot": template.eot if template else None, "steps": trainer.state.global_step,
            "max_length": cfg.data.max_length, "total_steps_planned": total_steps(cfg, len(trainer.train_dataset)),
            **(extra or {})}
    (tmp / "tuneforge_training.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if run.model.exists():
        shutil.rmtree(run.model)
    os.replace(tmp, run.model)


def _gather_full_state(trainer: Any) -> None:
    """FSDP checkpoints are sharded per rank; the final model is one full state dict (gathered by accelerate)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")


def _require_weights(folder: Path, adapter: bool) -> None:
    """Refuse to finish a run whose saved model has no weights (a known failure of sharded saves elsewhere)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    tensors = 0
    for f in files:
        with safe_open(str(f), "pt") as fh:
            tensors += sum(1 for k in fh.keys() if fh.get_slice(k).get_shape() and 0 not in fh.get_slice(k).get_shape())
    if tensors == 0:
        raise TuneforgeError("the saved model is empty", [Problem(
            f"{folder} has no non-empty weight tensors ({'adapter' if adapter else 'model'} files: "
            f"{[f.name for f in files] or 'none'})", field="distributed.strategy",
            fix="report this with the run's config; the last checkpoint is kept and the run can be resumed")])
