"""The OpenAI-compatible server on a tiny random model: the real openai client, raw HTTP errors, auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import serving
from tuneforge.inference.engine import Engine, GenerationOptions
from tuneforge.server.app import ServeOptions, create_app

KEY = "test-key-123"


@pytest.fixture(scope="module")
def engine(varied_engine: Engine) -> Engine:
    return varied_engine


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[str]:
    """``tuneforge serve``'s app under uvicorn in a thread, with an API key; yields the base URL."""
    app = create_app({"tiny": engine}, ServeOptions(api_key=KEY, max_batch=4, max_queue=8, default_max_tokens=16))
    with serving(app) as url:
        yield url


def _client(server: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def test_models_and_health(server: str) -> None:
    assert [m.id for m in _client(server).models.list()] == ["tiny"]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_greedy_chat_equals_the_engine(server: str, engine: Engine) -> None:
    from tuneforge.data.records import Message

    reply = _client(server).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}],
                                                    temperature=0, max_tokens=12)
    expected = engine.generate_batch([[Message("user", "Hello")]], GenerationOptions(max_new_tokens=12,
                                                                                     temperature=0.0,
                                                                                     repetition_penalty=1.0))[0]
    choice = reply.choices[0]
    assert len(expected) > 10 and choice.message.content.strip() == expected
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 12


def test_streaming_gives_the_same_text(server: str) -> None:
    client = _client(server)
    args = {"model": "tiny", "messages": [{"role": "user", "content": "Count"}], "temperature": 0, "max_tokens": 10}
    whole = client.chat.completions.create(**args).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **args))
    assert whole.strip() and "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert len({c.id for c in chunks}) == 1
    with_usage = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    assert with_usage[-1].choices == [] and 0 < with_usage[-1].usage.completion_tokens <= 10
    assert with_usage[-1].usage.prompt_tokens > 0 and all(c.usage is None for c in with_usage[:-1])


def test_raw_stream_ends_with_done(server: str) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_text_completion(server: str) -> None:
    reply = _client(server).completions.create(model="tiny", prompt="Once upon", max_tokens=5, temperature=0)
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens <= 5


def test_concurrent_requests_are_all_answered(server: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = _client(server)

    def ask(i: int) -> str:
        return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"q{i}"}],
                                              temperature=0.8, max_tokens=6).choices[0].finish_reason

    with ThreadPoolExecutor(6) as pool:
        assert all(f in ("stop", "length") for f in pool.map(ask, range(6)))


@pytest.mark.parametrize("body,status,param", [
    ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ({"model": "tiny", "messages": []}, 400, "messages"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "temperature"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**7}, 400, "max_tokens"),
    ({"model": "tiny", "messages": "hello"}, 400, "messages"),
])
def test_bad_requests_get_openai_errors(server: str, body: dict[str, Any], status: int, param: str) -> None:
    r = httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_malformed_json_is_a_400(server: str) -> None:
    r = httpx.post(f"{server}/v1/chat/completions", content=b"{not json",
                   headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_requests_without_the_key_get_401(server: str, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
        r = httpx.request(method, f"{server}{path}", headers=headers,
                          json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_a_batch_of_different_lengths_decodes_like_one_at_a_time(engine: Engine) -> None:
    # Left padding, position ids and dropping finished rows from the cache must not change any answer.
    import asyncio

    from tuneforge.data.records import Message
    from tuneforge.server.scheduler import Job, Scheduler

    prompts = ["Hi", "Tell me a long story about a dragon and a knight", "2+2?"]
    budgets = [3, 9, 6]  # rows leave the batch at different steps
    single = [engine.generate_batch([[Message("user", p)]], GenerationOptions(max_new_tokens=n, temperature=0.0,
                                                                               repetition_penalty=1.0))[0]
              for p, n in zip(prompts, budgets, strict=True)]

    async def batched() -> list[str]:
        scheduler = Scheduler(engine, max_batch=8, max_queue=8, start=False)
        loop = asyncio.get_running_loop()
        jobs = [Job(engine.prompt_ids([Message("user", p)]), GenerationOptions(max_new_tokens=n, temperature=0.0),
                    [], loop) for p, n in zip(prompts, budgets, strict=True)]
        for job in jobs:
            scheduler.submit(job)
        scheduler.start()  # all three queued first: one batch
        texts = []
        for job in jobs:
            pieces = []
            while (item := await job.out.get())[0] == "text":
                pieces.append(item[1])
            assert item[0] == "done" and item[3] <= job.options.max_new_tokens
            texts.append("".join(pieces).strip())
        scheduler.close()
        return texts

    assert all(single) and len(set(single)) == 3
    assert asyncio.run(batched()) == single


def test_serve_command_refuses_an_unset_key_variable_and_duplicate_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tuneforge.cli.main import app

    monkeypatch.delenv("TF_NO_SUCH_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "default", "--api-key-env", "TF_NO_SUCH_KEY"])
    assert result.exit_code == 2 and "TF_NO_SUCH_KEY" in result.output
    result = CliRunner().invoke(app, ["serve", "a/m", "b/m"])
    assert result.exit_code == 2 and "NAME=PATH" in result.output
