"""What the server used to accept and drop: tools, penalties, logprobs; malformed bodies never get a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import serving
from tuneforge.data.records import Message
from tuneforge.inference.engine import Engine
from tuneforge.server.app import ServeOptions, create_app
from tuneforge.server.scheduler import penalise

CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "Weather in Paris?"}]


class Scripted:
    """A real model whose next-token choice is overridden by a script, by position after the prompt.

    The cache, masks and positions are the real model's; only the last logits are replaced, so the
    server's whole decoding path runs while the answer is known in advance.
    """

    def __init__(self, model: Any, script: list[int], prompt_len: int) -> None:
        self.inner, self.script, self.prompt_len = model, script, prompt_len
        self.config, self.generation_config, self.device = model.config, model.generation_config, model.device

    def __call__(self, **kwargs: Any) -> Any:
        out = self.inner(**kwargs)
        logits = out.logits.clone()
        at = kwargs["position_ids"][:, -1] - self.prompt_len + 1
        for row, k in enumerate(at.tolist()):
            logits[row, -1] = -1e4
            logits[row, -1, self.script[max(0, min(k, len(self.script) - 1))]] = 1e4
        return SimpleNamespace(logits=logits)

    def eval(self) -> Scripted:
        return self


@pytest.fixture(scope="module")
def engine(varied_engine: Engine) -> Engine:
    return varied_engine


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[str]:
    app = create_app({"tiny": engine}, ServeOptions(max_batch=4, max_queue=8, default_max_tokens=16))
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def flat_server(tiny_model_dir: Path) -> Iterator[str]:
    """The tiny model as initialised (near-uniform weights): its greedy answers repeat tokens."""
    with serving(create_app({"tiny": Engine.load(str(tiny_model_dir))}, ServeOptions(default_max_tokens=16))) as url:
        yield url


@pytest.fixture(scope="module")
def tool_server(engine: Engine) -> Iterator[str]:
    """A server whose model answers the weather question with a JSON tool call, then its end of turn."""
    tok = engine.tokenizer
    prompt_len = len(engine.prompt_ids([Message("user", ASK[0]["content"])], "", json.dumps(TOOLS)))
    script = tok(json.dumps(CALL), add_special_tokens=False)["input_ids"] + [engine.stop_ids[0]]
    scripted = Engine(Scripted(engine.model, script, prompt_len), tok, engine.template)
    with serving(create_app({"tiny": scripted}, ServeOptions(default_max_tokens=64))) as url:
        yield url


def _client(url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


# --- tools ------------------------------------------------------------------------------------------------

def test_tool_calls_come_back_as_tool_calls(tool_server: str) -> None:
    reply = _client(tool_server).chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == CALL["arguments"]


def test_streamed_tool_calls(tool_server: str) -> None:
    chunks = list(_client(tool_server).chat.completions.create(model="tiny", messages=ASK, tools=TOOLS,
                                                              temperature=0, stream=True))
    calls = [c for ch in chunks if ch.choices for c in ch.choices[0].delta.tool_calls or []]
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == CALL["arguments"]
    assert not any(ch.choices[0].delta.content for ch in chunks if ch.choices)  # the JSON is not shown as text
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tools_reach_the_prompt_and_tool_choice_none_keeps_text(tool_server: str) -> None:
    client = _client(tool_server)
    with_tools = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0)
    plain = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="none",
                                           temperature=0, max_tokens=40)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens  # the definitions were rendered
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].message.content


def test_a_tool_result_turn_is_rendered(engine: Engine) -> None:
    from tuneforge.server.protocol import ChatCompletionRequest

    req = ChatCompletionRequest.model_validate({"model": "tiny", "messages": [
        *ASK, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}], "tools": TOOLS})
    messages = [m.message() for m in req.messages]
    assert [m.role for m in messages] == ["user", "tool_call", "tool"]
    text = engine.tokenizer.decode(engine.prompt_ids(messages, "", req.tools_json))
    assert "18 C" in text and "get_weather" in text


@pytest.fixture(scope="module")
def forced_server(engine: Engine) -> Iterator[str]:
    """A model that, after the forced opening ``{"name": "get_weather"``, writes the arguments and stops."""
    tok = engine.tokenizer
    messages = [Message("user", ASK[0]["content"])]
    opening = engine.template.call_opening(messages, "get_weather", "", json.dumps(TOOLS))
    prompt_len = len(engine.prompt_ids(messages, "", json.dumps(TOOLS))) + len(tok(opening, add_special_tokens=False)
                                                                             ["input_ids"])
    rest = json.dumps(CALL)[len(opening):]
    script = tok(rest, add_special_tokens=False)["input_ids"] + [engine.stop_ids[0]]
    scripted = Engine(Scripted(engine.model, script, prompt_len), tok, engine.template)
    with serving(create_app({"tiny": scripted}, ServeOptions(default_max_tokens=64))) as url:
        yield url


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_choice_writes_the_calls_opening(forced_server: str, choice: Any, stream: bool) -> None:
    client = _client(forced_server)
    args = {"model": "tiny", "messages": ASK, "tools": TOOLS, "tool_choice": choice, "temperature": 0}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **args))
        calls = [c for ch in chunks if ch.choices for c in ch.choices[0].delta.tool_calls or []]
        finish = chunks[-1].choices[0].finish_reason
    else:
        reply = client.chat.completions.create(**args)
        calls, finish = reply.choices[0].message.tool_calls, reply.choices[0].finish_reason
    assert finish == "tool_calls" and [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == CALL["arguments"]


@pytest.mark.parametrize("body", [
    {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
    {"tools": TOOLS + [{"type": "function", "function": {"name": "get_time"}}], "tool_choice": "required"},
    {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
])
def test_a_tool_choice_that_cannot_be_honoured_is_a_400(server: str, body: dict[str, Any]) -> None:
    r = httpx.post(f"{server}/v1/chat/completions", json={"model": "tiny", "messages": ASK, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"


# --- penalties and logprobs -------------------------------------------------------------------------------

def _row(tokens: list[int], presence: float, frequency: float) -> Any:
    job = SimpleNamespace(presence_penalty=presence, frequency_penalty=frequency, logit_bias={})
    return SimpleNamespace(job=job, detok=SimpleNamespace(tokens=tokens))


def test_penalties_follow_openais_formula() -> None:
    logits = torch.zeros(3, 5)
    out = penalise(logits, [_row([1, 1, 2], 0.5, 0.25), _row([1], 0.0, 0.0), _row([], 1.0, 1.0)])
    assert out[0].tolist() == [0.0, -1.0, -0.75, 0.0, 0.0]  # token 1: 2 x 0.25 + 0.5; token 2: 0.25 + 0.5
    assert out[1].tolist() == [0.0] * 5 and out[2].tolist() == [0.0] * 5
    assert logits.abs().sum() == 0  # the model's logits are not changed in place


def test_frequency_penalty_changes_a_repetitive_greedy_answer(flat_server: str) -> None:
    client = _client(flat_server)
    args = {"model": "tiny", "messages": [{"role": "user", "content": "Repeat"}], "temperature": 0, "max_tokens": 16}
    plain = client.chat.completions.create(**args, logprobs=True).choices[0]
    penalised = client.chat.completions.create(**args, frequency_penalty=2.0, presence_penalty=2.0,
                                               logprobs=True).choices[0]
    ids = [e.token for e in plain.logprobs.content]
    assert len(set(ids)) < len(ids), "the tiny model should repeat itself without a penalty"
    assert penalised.message.content != plain.message.content
    fixed = [e.token for e in penalised.logprobs.content]
    assert len(set(fixed)) / len(fixed) > len(set(ids)) / len(ids)


def test_chat_logprobs_are_the_models_and_cover_every_token(server: str) -> None:
    reply = _client(server).chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=8,
                                                    logprobs=True, top_logprobs=3)
    entries = reply.choices[0].logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == reply.choices[0].message.content
    for e in entries:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        assert e.logprob == pytest.approx(e.top_logprobs[0].logprob)  # greedy takes the most likely token
        assert bytes(e.bytes).decode() == e.token


def test_streamed_and_completion_logprobs(server: str) -> None:
    client = _client(server)
    chunks = list(client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=8,
                                                 logprobs=True, stream=True))
    entries = [e for ch in chunks if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "".join(e.token for e in entries) == text and entries
    done = client.completions.create(model="tiny", prompt="Once upon", max_tokens=5, temperature=0, logprobs=2)
    lp = done.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == done.usage.completion_tokens
    assert "".join(lp.tokens) == done.choices[0].text and all(len(t) == 2 for t in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)


def test_no_logprobs_unless_asked(server: str) -> None:
    reply = _client(server).chat.completions.create(model="tiny", messages=ASK, max_tokens=3)
    assert reply.choices[0].logprobs is None


def test_logit_bias_seed_and_max_completion_tokens(server: str, engine: Engine) -> None:
    client = _client(server)
    token = engine.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    biased = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=4,
                                            logit_bias={str(token): 100})
    assert biased.choices[0].message.content == " Paris" * 4
    args = {"model": "tiny", "messages": ASK, "temperature": 1.0, "max_completion_tokens": 12}
    first, again = (client.chat.completions.create(seed=7, **args).choices[0].message.content for _ in range(2))
    other = client.chat.completions.create(seed=8, **args)
    assert first == again and other.choices[0].message.content != first
    assert other.usage.completion_tokens <= 12


@pytest.mark.parametrize(("path", "extra", "param"), [
    ("chat/completions", {"response_format": {"type": "json_object"}}, "response_format"),
    ("chat/completions", {"logit_bias": {"5": 300}}, "logit_bias"),
    ("chat/completions", {"seed": 2**70}, "seed"),
    ("completions", {"echo": True}, "echo"),
    ("completions", {"suffix": "end"}, "suffix"),
    ("completions", {"best_of": 3}, "best_of"),
])
def test_parameters_that_would_be_ignored_are_refused(server: str, path: str, extra: dict[str, Any],
                                                      param: str) -> None:
    body = {"model": "tiny", "messages": ASK, "prompt": "Hi", "max_tokens": 2, **extra}
    r = httpx.post(f"{server}/v1/{path}", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


# --- malformed input --------------------------------------------------------------------------------------

def test_a_lone_surrogate_is_a_400_naming_the_field(server: str) -> None:
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    r = httpx.post(f"{server}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.content"


#: Text including lone surrogates (which JSON can carry as \\ud800 escapes).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(["\ud800", "a\udfff"])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                    | TEXT, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
FIELDS = ["model", "messages", "temperature", "top_p", "max_tokens", "stop", "n", "stream", "tools",
          "tool_choice", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "stream_options",
          "logit_bias", "seed", "response_format", "max_completion_tokens", "echo", "suffix", "best_of"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=JSON, path=st.sampled_from(["chat/completions", "completions"]))
def test_fuzzed_bodies_never_get_a_500(server: str, field: str, value: Any, path: str) -> None:
    body: dict[str, Any] = {"model": "tiny", "max_tokens": 2, "messages": ASK, "prompt": "Hi"}
    body[field] = value
    r = httpx.post(f"{server}/v1/{path}", content=json.dumps(body).encode(), timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        assert r.json()["error"]["message"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=40) | JSON.map(lambda v: json.dumps(v).encode()))
def test_fuzzed_raw_bodies_never_get_a_500(server: str, raw: bytes) -> None:
    r = httpx.post(f"{server}/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
