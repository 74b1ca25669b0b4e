"""The OpenAI wire format tuneforge serves: validated requests, response bodies and error bodies.

Requests are pydantic models so that a wrong type or a missing field becomes a 400 with OpenAI's
error body naming the parameter (``param``), never a 422 or a 500 with a traceback. Unknown extra
fields (``user``, ``seed``, ``logprobs``...) are accepted and ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuneforge.data.records import Message
from tuneforge.inference.engine import GenerationOptions

#: HTTP status -> OpenAI error ``type``.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               408: "timeout_error", 413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
               503: "server_error"}


class ApiError(Exception):
    """An error answered with OpenAI's body ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


def validation_error(exc: ValidationError) -> ApiError:
    """A 400 naming every invalid parameter at once (``messages.0.content: Input should be a valid string``)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append(f"{where}: {err['msg']}")
    first = ".".join(str(part) for part in exc.errors()[0]["loc"]) if exc.errors() else None
    return ApiError(400, "; ".join(problems), param=first or None, code="invalid_value")


class ChatMessage(BaseModel):
    """One message; ``content`` may be a string or OpenAI's list of text parts."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        if isinstance(value, list):
            if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in value):
                raise ValueError("only text parts ({'type': 'text', 'text': ...}) are supported")
            return "".join(part["text"] for part in value)
        return value

    def message(self) -> Message:
        """The tuneforge message the template renders."""
        return Message(self.role, self.content or "")


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
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request (n > 1 is refused, not ignored)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)

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
        return GenerationOptions(max_new_tokens=self.max_tokens or default_max_tokens, temperature=self.temperature,
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

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in value):
            raise ValueError("messages need at least one user message")
        return value


class CompletionRequest(SamplingRequest):
    """``POST /v1/completions``: a raw prompt, no chat template."""

    prompt: str = Field(min_length=1)


def _ids(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """A whole ``chat.completion`` body."""
    return {"id": _ids("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(chunk_id: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream (same ``id`` for every chunk of one answer)."""
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(chunk_id: str, obj: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk of a stream asked with ``include_usage``: no choices, the token counts."""
    return {"id": chunk_id, "object": obj, "created": int(time.time()), "model": model, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}


def completion_chunk(chunk_id: str, model: str, text: str, finish: str | None = None) -> dict[str, Any]:
    """A ``text_completion`` without usage: one chunk of a stream (same ``id`` for every chunk)."""
    return {"id": chunk_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}


def completion_response(model: str, text: str, finish: str, prompt_tokens: int,
                        completion_tokens: int) -> dict[str, Any]:
    """A whole ``text_completion`` body."""
    return completion_chunk(_ids("cmpl"), model, text, finish) | {"usage": usage(prompt_tokens, completion_tokens)}


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
