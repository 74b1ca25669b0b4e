"""The OpenAI wire format tuneforge serves: validated requests, response bodies and error bodies.

Requests are pydantic models so that a wrong type or a missing field becomes a 400 with OpenAI's
error body naming the parameter (``param``), never a 422 or a 500 with a traceback. The parameters
that shape an answer are applied (sampling, seed, logit bias, penalties, stop strings, tools,
logprobs) or refused with a 400 (``n`` > 1, ``response_format`` other than text, ``echo``, ``suffix``,
``best_of`` > 1); other fields (``user``, ``metadata``, ``store`` ...) are accepted and ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuneforge.data.records import Message
from tuneforge.inference.engine import GenerationOptions
from tuneforge.server.tools import parse_tool_calls

#: HTTP status -> OpenAI error ``type``.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               408: "timeout_error", 413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
               503: "server_error"}


class ApiError(Exception):
    """An error answered with OpenAI's body ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, _printable(message), param, code
        self.param = _printable(param) if param is not None else None

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


def _printable(text: str) -> str:
    """Text that can be sent as UTF-8 JSON: lone surrogates (from the client's own input) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bad_strings(value: Any, where: str = "") -> list[str]:
    """Paths of strings in a decoded JSON body that are not valid Unicode text (lone surrogates).

    JSON allows ``"\\ud800"``; Python decodes it into a string that cannot be encoded to UTF-8, which
    every tokenizer refuses. Such a request is the client's error: a 400 naming the field.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [where or "body"]
        return []
    if isinstance(value, dict):
        keys = [f"{where}.{k}" if where else str(k) for k in value]
        return ([p for p in keys if bad_strings(p)]
                + [p for k, v in zip(keys, value.values(), strict=True) for p in bad_strings(v, k)])
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in bad_strings(v, f"{where}.{i}" if where else str(i))]
    return []


def validation_error(exc: ValidationError) -> ApiError:
    """A 400 naming every invalid parameter at once (``messages.0.content: Input should be a valid string``)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append(f"{where}: {err['msg']}")
    first = ".".join(str(part) for part in exc.errors()[0]["loc"]) if exc.errors() else None
    return ApiError(400, "; ".join(problems), param=first or None, code="invalid_value")


class FunctionCall(BaseModel):
    """The function of a tool call: its name and its arguments as a JSON string (OpenAI's shape)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    arguments: str = "{}"

    def parsed(self) -> Any:
        """The arguments as an object (the string itself when it is not JSON)."""
        try:
            return json.loads(self.arguments)
        except json.JSONDecodeError:
            return self.arguments


class ToolCall(BaseModel):
    """One tool call of an assistant message."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(BaseModel):
    """A function the model may call."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class Tool(BaseModel):
    """One entry of ``tools``."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: FunctionDef


class NamedToolChoice(BaseModel):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"] = "function"
    function: dict[str, str]


class ChatMessage(BaseModel):
    """One message; ``content`` may be a string or OpenAI's list of text parts; an assistant turn may
    carry the ``tool_calls`` it made (multi-turn tool use)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        if isinstance(value, list):
            if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in value):
                raise ValueError("only text parts ({'type': 'text', 'text': ...}) are supported")
            return "".join(part["text"] for part in value)
        return value

    def message(self) -> Message:
        """The tuneforge message the template renders (a ``tool_call`` turn for an assistant's tool calls)."""
        if self.role == "assistant" and self.tool_calls:
            calls = [{"name": c.function.name, "arguments": c.function.parsed()} for c in self.tool_calls]
            return Message("tool_call", json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False))
        return Message(self.role, self.content or "")  # type: ignore[arg-type]


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts (and no choices)."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class SamplingRequest(BaseModel):
    """What chat and text completions share: model, sampling options, stop strings, streaming."""

    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="the newer name of max_tokens")
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request (n > 1 is refused, not ignored)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="subtracted once from every token "
                                    "already in the answer")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="subtracted per occurrence in the answer")
    logit_bias: dict[int, float] | None = Field(None, description="token id -> bias added to its logit (-100..100)")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1, description="this request's own random generator: the same seed and "
                             "request sample the same answer")
    response_format: dict[str, Any] | None = None

    @field_validator("logit_bias")
    @classmethod
    def _biases(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        if value and any(not -100 <= b <= 100 for b in value.values()):
            raise ValueError("biases must lie between -100 and 100")
        if value and any(t < 0 for t in value):
            raise ValueError("token ids must be >= 0")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "text") != "text":
            raise ValueError(f"response_format {value.get('type')!r} is not supported: tuneforge does not "
                             "constrain decoding to JSON; ask for JSON in the prompt, or omit response_format")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def options(self, default_max_tokens: int) -> GenerationOptions:
        """The engine's generation options (the same ones ``tuneforge chat`` uses); no repetition penalty."""
        limit = self.max_tokens or self.max_completion_tokens or default_max_tokens
        return GenerationOptions(max_new_tokens=limit, temperature=self.temperature,
                                 top_p=self.top_p, repetition_penalty=1.0)

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def stops(self) -> list[str]:
        """The stop strings (validated into a list)."""
        return self.stop if isinstance(self.stop, list) else []


class ChatCompletionRequest(SamplingRequest):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @field_validator("tool_choice")
    @classmethod
    def _forced_tool_is_offered(cls, value: Any, info: ValidationInfo) -> Any:
        names = [t.function.name for t in info.data.get("tools") or []]
        if isinstance(value, NamedToolChoice) and value.function.get("name") not in names:
            raise ValueError(f"names {value.function.get('name')!r}, which is not in tools "
                             f"({', '.join(names) or 'none given'})")
        if value == "required" and len(names) != 1:
            raise ValueError("'required' needs exactly one tool (a forced call is started by writing its opening, "
                             "so the function must be known); name the function instead: "
                             "{'type': 'function', 'function': {'name': ...}}")
        return value

    @property
    def forced_tool(self) -> str | None:
        """The function the answer must call (a named ``tool_choice``, or ``required`` with one tool)."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function["name"]
        if self.tool_choice == "required" and self.tools:
            return self.tools[0].function.name
        return None

    @property
    def tools_json(self) -> str:
        """The tool definitions for the chat template ('' when none, or when tool_choice is 'none')."""
        if not self.tools or self.tool_choice == "none":
            return ""
        return json.dumps([t.model_dump() for t in self.tools], ensure_ascii=False)

    @property
    def n_logprobs(self) -> int | None:
        """Alternatives per token to return (None: no logprobs)."""
        return (self.top_logprobs or 0) if self.logprobs else None

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in value):
            raise ValueError("messages need at least one user message")
        return value


class CompletionRequest(SamplingRequest):
    """``POST /v1/completions``: a raw prompt, no chat template."""

    prompt: str = Field(min_length=1)
    echo: Literal[False] = Field(False, description="echoing the prompt is not supported (refused, not ignored)")
    suffix: None = Field(None, description="insertion (a suffix) is not supported (refused, not ignored)")
    best_of: int = Field(1, ge=1, le=1, description="one candidate per request (refused, not ignored)")
    logprobs: int | None = Field(None, ge=0, le=5, description="alternatives per token to return with "
                                 "each token's log-probability")

    @property
    def n_logprobs(self) -> int | None:
        """Alternatives per token to return (None: no logprobs)."""
        return self.logprobs


def _ids(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_message(text: str, finish: str, tool_names: set[str]) -> tuple[dict[str, Any], str]:
    """The assistant message of an answer and its finish reason: a tool call when the offered tools were
    called (``finish_reason: tool_calls``, no content), else the text."""
    calls = parse_tool_calls(text, tool_names) if tool_names else None
    if calls:
        return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    return {"role": "assistant", "content": text}, finish


def chat_response(model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int,
                  tool_names: set[str] | None = None, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A whole ``chat.completion`` body (``logprobs`` None: not asked)."""
    message, finish = chat_message(text, finish, tool_names or set())
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": _chat_logprobs(logprobs)}
    return {"id": _ids("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}


def _chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The chat API's ``logprobs`` object (None when they were not asked)."""
    return {"content": entries} if entries is not None else None


def chat_chunk(chunk_id: str, model: str, delta: dict[str, Any], finish: str | None = None,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream (same ``id`` for every chunk of one answer)."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": _chat_logprobs(logprobs)}
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [choice]}


def usage_chunk(chunk_id: str, obj: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk of a stream asked with ``include_usage``: no choices, the token counts."""
    return {"id": chunk_id, "object": obj, "created": int(time.time()), "model": model, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}


def completion_chunk(chunk_id: str, model: str, text: str, finish: str | None = None,
                     logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``text_completion`` without usage: one chunk of a stream (same ``id`` for every chunk)."""
    return {"id": chunk_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}]}


def completion_response(model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int,
                        logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A whole ``text_completion`` body."""
    legacy = completion_logprobs(logprobs) if logprobs is not None else None
    body = completion_chunk(_ids("cmpl"), model, text, finish, legacy)
    return body | {"usage": usage(prompt_tokens, completion_tokens)}


def completion_logprobs(entries: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """The completions API's logprobs shape (parallel lists) from per-token entries."""
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets}


def new_chunk_id(prefix: str = "chatcmpl") -> str:
    """The id shared by the chunks of one streamed answer (``cmpl`` for text completions)."""
    return _ids(prefix)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (excluded), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters of a streamed ``text`` could still start a stop string.

    A stream must not send them yet: the next piece may complete the stop, which is never shown.
    """
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                longest = max(longest, k)
                break
    return longest
