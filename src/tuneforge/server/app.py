"""The FastAPI app: OpenAI-compatible routes over the schedulers, OpenAI error bodies, optional API key."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from tuneforge.data.templates import TemplateError
from tuneforge.inference.engine import Engine
from tuneforge.server.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingRequest,
    bad_strings,
    chat_chunk,
    chat_message,
    chat_response,
    completion_chunk,
    completion_logprobs,
    completion_response,
    new_chunk_id,
    usage_chunk,
    validation_error,
)
from tuneforge.server.scheduler import Job, Scheduler
from tuneforge.server.tools import may_be_call
from tuneforge.utils.errors import ConfigError, Problem


@dataclass
class ServeOptions:
    """Server limits."""

    api_key: str | None = None  # required as "Authorization: Bearer <key>" when set
    max_batch: int = 16  # requests decoded together (rows of one batch)
    max_queue: int = 64  # waiting requests beyond which new ones get 429
    timeout_s: float = 300.0  # a request that takes longer gets 408 (or an error event when streaming)
    default_max_tokens: int = 256


def _refuse_virtual_tokens(engines: dict[str, Engine]) -> None:
    """The scheduler decodes with its own KV cache, step by step; peft's prompt-learning forward would put the
    virtual tokens in front of every step again (only peft's own ``generate`` places them once)."""
    bad = [name for name, e in engines.items() if getattr(getattr(e.model, "active_peft_config", None),
                                                             "is_prompt_learning", False)]
    if bad:
        raise ConfigError("virtual-token adapters cannot be served", [Problem(
            f"{name}: a prompt, ptuning or prefix adapter (virtual tokens); the server's batched decoding does not "
            "place them", field="model", fix=f"use `tuneforge chat {name}` or `tuneforge eval`, or train it with "
            "method lora to serve it") for name in bad])


def create_app(engines: dict[str, Engine], options: ServeOptions | None = None) -> FastAPI:
    """The app serving ``engines`` by model name.

    Engines that share one loaded model (adapters of one base, see ``Engine.load_many``) share one
    scheduler, i.e. one worker thread and one batch, whose rows each decode with their own adapter.
    """
    opts = options or ServeOptions()
    _refuse_virtual_tokens(engines)
    by_model: dict[int, Scheduler] = {}
    for engine in engines.values():
        if id(engine.model) not in by_model:
            by_model[id(engine.model)] = Scheduler(engine, opts.max_batch, opts.max_queue)
    schedulers = {name: by_model[id(engine.model)] for name, engine in engines.items()}
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for scheduler in by_model.values():
            scheduler.close()

    app = FastAPI(title="tuneforge", docs_url=None, redoc_url=None, lifespan=lifespan)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # never a traceback to the client
        return JSONResponse(ApiError(500, f"internal error: {type(exc).__name__}").body(), status_code=500)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if opts.api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {opts.api_key}".encode()):
                err = ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                               code="invalid_api_key")
                return JSONResponse(err.body(), status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(schedulers),
                "load": {name: scheduler.load() for name, scheduler in schedulers.items()}}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "tuneforge"}
                                           for name in schedulers]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        req = await _parse(request, ChatCompletionRequest)
        engine = _engine(engines, req.model)
        system, turns = _split_system(req)
        tools = req.tools_json
        ids = engine.prompt_ids(turns, system, tools)
        opening = _opening(engine, req, turns, system, tools)
        ids += engine.tokenizer(opening, add_special_tokens=False)["input_ids"] if opening else []
        job = _job(schedulers[req.model], engine, req, ids, opts)
        names = {t.function.name for t in req.tools or []} if tools else set()
        if req.stream:
            return _sse(_chat_stream(job, req, opts.timeout_s, names, opening))
        text, finish, completion, logprobs = await _collect(job, opts.timeout_s)
        return chat_response(req.model, opening + text, finish, len(ids), completion, names,
                             logprobs if req.logprobs else None)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        req = await _parse(request, CompletionRequest)
        engine = _engine(engines, req.model)
        ids = engine.tokenizer(req.prompt, add_special_tokens=False)["input_ids"]
        job = _job(schedulers[req.model], engine, req, ids, opts)
        if req.stream:
            return _sse(_completion_stream(job, req, opts.timeout_s))
        text, finish, completion, logprobs = await _collect(job, opts.timeout_s)
        return completion_response(req.model, text, finish, len(ids), completion,
                                   logprobs if req.logprobs is not None else None)

    return app


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    bad = bad_strings(body)
    if bad:
        raise ApiError(400, f"{bad[0]}: not valid Unicode text (a lone surrogate such as \\ud800)",
                       param=bad[0], code="invalid_value")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _engine(engines: dict[str, Engine], name: str) -> Engine:
    if name not in engines:
        raise ApiError(404, f"model '{name}' is not served here; GET /v1/models lists: {', '.join(engines)}",
                       param="model", code="model_not_found")
    return engines[name]


def _opening(engine: Engine, req: ChatCompletionRequest, turns: list[Any], system: str, tools: str) -> str:
    """For a forced tool call (``tool_choice`` naming a function, or ``required`` with one tool), the start of
    that call as the template writes it; the model completes the arguments. '' when nothing is forced."""
    name = req.forced_tool if tools else None
    if name is None:
        return ""
    try:
        return engine.template.call_opening(turns, name, system, tools)
    except TemplateError as exc:
        raise ApiError(400, f"tool_choice cannot be forced with this model's chat template: {exc}",
                       param="tool_choice", code="unsupported_value") from None


def _split_system(req: ChatCompletionRequest) -> tuple[str, list[Any]]:
    """System messages become the system prompt ("" keeps the one the model was trained with)."""
    systems = [m.message().content for m in req.messages if m.role == "system"]
    return "\n".join(systems), [m.message() for m in req.messages if m.role != "system"]


def _job(scheduler: Scheduler, engine: Engine, req: SamplingRequest, ids: list[int], opts: ServeOptions) -> Job:
    limit = getattr(engine.model.config, "max_position_embeddings", None)
    gen = req.options(opts.default_max_tokens)
    if limit and len(ids) + gen.max_new_tokens > limit:
        raise ApiError(400, f"the prompt has {len(ids)} tokens and max_tokens is {gen.max_new_tokens}: together "
                       f"more than the model's context of {limit} tokens; shorten the messages or lower max_tokens",
                       param="max_tokens", code="context_length_exceeded")
    job = Job(ids, gen, req.stops, asyncio.get_running_loop(), adapter=engine.adapter,
              presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
              logprobs=req.n_logprobs, logit_bias=dict(req.logit_bias or {}), seed=req.seed)
    scheduler.submit(job)
    return job


async def _items(job: Job, timeout_s: float) -> AsyncIterator[tuple[Any, ...]]:
    """The job's items until it is done; cancels the job when the consumer stops early or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                item = await asyncio.wait_for(job.out.get(), timeout=max(left, 0.0))
            except TimeoutError:
                raise ApiError(408, f"the request took longer than {timeout_s:.0f} s", code="timeout") from None
            if item[0] == "error":
                raise ApiError(500, item[1], code="generation_failed")
            yield item
            if item[0] == "done":
                return
    finally:
        job.cancelled.set()  # a no-op when done; frees the batch row when the client went away


async def _collect(job: Job, timeout_s: float) -> tuple[str, str, int, list[dict[str, Any]]]:
    pieces, finish, completion, logprobs = [], "stop", 0, []
    async for item in _items(job, timeout_s):
        if item[0] == "text":
            pieces.append(item[1])
            logprobs += item[2]
        else:
            finish, completion = item[1], item[3]
            logprobs += item[4]
    return "".join(pieces), finish, completion, logprobs


def _sse(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except ApiError as exc:  # headers are sent: the error travels as an event
            yield f"data: {json.dumps(exc.body())}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


async def _chat_stream(job: Job, req: ChatCompletionRequest, timeout_s: float, tool_names: set[str],
                       opening: str = "") -> AsyncIterator[dict[str, Any]]:
    """Chat chunks; with tools offered, text that may be a tool call is held until it is known.

    ``opening`` is the start of a forced call, written into the prompt: it belongs to the answer.
    """
    chunk_id, model = new_chunk_id(), req.model
    yield chat_chunk(chunk_id, model, {"role": "assistant", "content": ""})
    held, held_logprobs, holding = opening, [], bool(tool_names)
    async for item in _items(job, timeout_s):
        if item[0] == "text":
            held, held_logprobs = held + item[1], held_logprobs + item[2]
            if holding and may_be_call(held):
                continue
            holding = False
            yield chat_chunk(chunk_id, model, {"content": held}, logprobs=held_logprobs if req.logprobs else None)
            held, held_logprobs = "", []
            continue
        finish, held_logprobs = item[1], held_logprobs + item[4]
        if held:
            message, finish = chat_message(held, finish, tool_names)
            delta = ({"tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]}
                     if "tool_calls" in message else {"content": held})
            yield chat_chunk(chunk_id, model, delta, logprobs=held_logprobs if req.logprobs else None)
        yield chat_chunk(chunk_id, model, {}, finish=finish)
        if req.include_usage:
            yield usage_chunk(chunk_id, "chat.completion.chunk", model, item[2], item[3])


async def _completion_stream(job: Job, req: CompletionRequest, timeout_s: float) -> AsyncIterator[dict[str, Any]]:
    chunk_id, model, offset = new_chunk_id("cmpl"), req.model, 0
    async for item in _items(job, timeout_s):
        text, finish, entries = (item[1], None, item[2]) if item[0] == "text" else ("", item[1], item[4])
        legacy = completion_logprobs(entries, offset) if req.logprobs is not None else None
        offset += len(text)
        yield completion_chunk(chunk_id, model, text, finish, legacy)
        if finish and req.include_usage:
            yield usage_chunk(chunk_id, "text_completion", model, item[2], item[3])
