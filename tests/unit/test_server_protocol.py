"""The OpenAI wire format: request validation into OpenAI error bodies, stop strings, response shapes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tuneforge.server.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    chat_response,
    cut_at_stop,
    held_back,
    validation_error,
)


def _chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                 **fields})


def _error(**fields: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        _chat(**fields)
    err = validation_error(info.value)
    assert err.status == 400
    return err.body()["error"]


def test_valid_request_becomes_engine_options_and_messages() -> None:
    req = _chat(temperature=0.3, top_p=0.5, max_tokens=7, stop="###", user="ignored-extra",
                messages=[{"role": "system", "content": "be brief"},
                          {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    opts = req.options(default_max_tokens=256)
    assert (opts.temperature, opts.top_p, opts.max_new_tokens, opts.repetition_penalty) == (0.3, 0.5, 7, 1.0)
    assert req.stops == ["###"]
    assert [(m.role, m.content) for m in (x.message() for x in req.messages)] == [("system", "be brief"),
                                                                                  ("user", "ab")]
    assert _chat().options(default_max_tokens=99).max_new_tokens == 99


@pytest.mark.parametrize("fields,param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "only a system turn"}]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3.5}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"n": 2}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content"),
])
def test_bad_requests_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    err = _error(**fields)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param and param.split(".")[0] in err["message"]


def test_all_problems_are_reported_at_once() -> None:
    err = _error(temperature="hot", max_tokens=-1)
    assert "temperature" in err["message"] and "max_tokens" in err["message"]


def test_missing_model_and_prompt() -> None:
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"prompt": ""})
    message = validation_error(info.value).body()["error"]["message"]
    assert "model" in message and "prompt" in message


def test_error_body_shapes() -> None:
    assert ApiError(401, "bad key", code="invalid_api_key").body() == {
        "error": {"message": "bad key", "type": "authentication_error", "param": None, "code": "invalid_api_key"}}
    assert ApiError(429, "busy").body()["error"]["type"] == "rate_limit_error"


def test_stop_strings_cut_and_hold_back() -> None:
    assert cut_at_stop("hello ### world END", ["END", "###"]) == ("hello ", True)
    assert cut_at_stop("no stop here", ["###"]) == ("no stop here", False)
    assert held_back("answer #", ["###"]) == 1  # "#" may begin "###": not streamed yet
    assert held_back("answer ##", ["###", "##!"]) == 2
    assert held_back("answer", ["###"]) == 0


def test_chat_response_shape() -> None:
    body = chat_response("m", "hi", "stop", 5, 2)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"] == {"role": "assistant",
                                                                                   "content": "hi"}
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
