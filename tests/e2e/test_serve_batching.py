"""The server's scheduling on tiny random models: joining a running batch, disconnects, a full queue,
several adapters over one base, and the LLM-as-judge asking a served model."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import serving, varied
from tuneforge.data.records import Message
from tuneforge.inference.engine import Engine, GenerationOptions
from tuneforge.server.app import ServeOptions, create_app
from tuneforge.server.scheduler import Job, Scheduler

GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0}


@pytest.fixture(scope="module")
def base_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model with varied weights (answers differ from prompt to prompt)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("base")
    varied(AutoModelForCausalLM.from_pretrained(tiny_model_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(base_dir: Path) -> Engine:
    return Engine.load(str(base_dir))


def _single(engine: Engine, prompt: str, n: int) -> str:
    return engine.generate_batch([[Message("user", prompt)]], GenerationOptions(max_new_tokens=n, **GREEDY))[0]


async def _text(job: Job) -> tuple[str, tuple[Any, ...]]:
    pieces = []
    while (item := await job.out.get())[0] == "text":
        pieces.append(item[1])
    return "".join(pieces).strip(), item


def test_a_request_joins_the_running_batch_and_both_answers_are_unchanged(engine: Engine) -> None:
    long_prompt, short_prompt = "Tell me a long story about a dragon and a knight", "Hi"

    async def run() -> tuple[str, str, int, tuple[Any, ...]]:
        scheduler = Scheduler(engine, max_batch=4, max_queue=4)
        loop = asyncio.get_running_loop()
        first = Job(engine.prompt_ids([Message("user", long_prompt)]), GenerationOptions(400, **GREEDY), [], loop)
        scheduler.submit(first)
        assert (await first.out.get())[0] == "text"  # the first row is decoding ...
        second = Job(engine.prompt_ids([Message("user", short_prompt)]), GenerationOptions(8, **GREEDY), [], loop)
        scheduler.submit(second)  # ... when the second arrives
        text2, _ = await _text(second)
        rest, done1 = await _text(first)
        scheduler.close()
        return rest, text2, scheduler.peak_batch, done1

    rest, text2, peak, done1 = asyncio.run(run())
    assert done1[0] == "done" and done1[3] == 400  # the first ran its whole budget: it was running throughout
    assert peak == 2  # so the second joined it rather than waiting
    assert text2 == _single(engine, short_prompt, 8)
    assert _single(engine, long_prompt, 400).endswith(rest)  # the first's answer did not change either


def test_detokenizer_pieces_add_up_to_the_whole_decode(tokenizer: Any) -> None:
    from tuneforge.server.scheduler import Detokenizer

    text = "Grüße, 世界! naïve café — 👍🏽 ok\n  indented"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = Detokenizer(tokenizer)
    pieces = [detok.add(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)  # multi-byte characters wait until complete


def _stream_first_chunk_then_hang_up(url: str, body: dict[str, Any]) -> None:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                return  # leaving the block closes the connection mid-stream


def _load(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health").json()["load"]["tiny"]


def test_a_client_that_disconnects_mid_stream_frees_its_row(engine: Engine) -> None:
    app = create_app({"tiny": engine}, ServeOptions(max_batch=2, max_queue=4))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me a long story"}], "stream": True,
            "max_tokens": 1500, "temperature": 0}
    with serving(app) as url:
        _stream_first_chunk_then_hang_up(url, body)
        deadline = time.time() + 20
        while _load(url)["running"] and time.time() < deadline:
            time.sleep(0.05)
        load = _load(url)
    assert load["running"] == 0 and load["finished"] == {"cancelled": 1}


def test_a_full_queue_answers_429_and_the_rest_are_served(engine: Engine) -> None:
    app = create_app({"tiny": engine}, ServeOptions(max_batch=1, max_queue=1))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 300,
            "temperature": 0}
    with serving(app) as url, ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60), range(6)))
    codes = [r.status_code for r in replies]
    assert set(codes) == {200, 429} and codes.count(200) >= 2, codes
    busy = next(r.json()["error"] for r in replies if r.status_code == 429)
    assert busy["code"] == "rate_limit_exceeded" and busy["type"] == "rate_limit_error" and "retry" in busy["message"]


@pytest.fixture(scope="module")
def adapters(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different random LoRA adapters over the base (non-zero B, so each changes the answers)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = []
    for seed in (1, 2):
        import torch

        torch.manual_seed(seed)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                               LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                          init_lora_weights=False))
        folder = tmp_path_factory.mktemp(f"adapter{seed}")
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(folder)
        out.append(folder)
    return out


def test_adapters_over_one_base_share_its_weights_and_answer_as_if_alone(base_dir: Path,
                                                                          adapters: list[Path]) -> None:
    paths = [str(base_dir), str(adapters[0]), str(adapters[1])]
    engines = Engine.load_many(paths)
    assert engines[0].model is engines[1].model is engines[2].model  # one copy of the base weights
    names = ["base", "a1", "a2"]
    app = create_app(dict(zip(names, engines, strict=True)), ServeOptions(max_batch=8))
    prompts = ["Hello there", "What is two plus two?"]
    with serving(app) as url, ThreadPoolExecutor(6) as pool:
        def ask(args: tuple[str, str]) -> str:
            body = {"model": args[0], "messages": [{"role": "user", "content": args[1]}], "max_tokens": 10,
                    "temperature": 0}
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0][
                "message"]["content"].strip()

        asked = [(n, p) for n in names for p in prompts]
        served = dict(zip(asked, pool.map(ask, asked), strict=True))
        load = httpx.get(f"{url}/health").json()["load"]
    alone = {(n, p): _single(Engine.load(path), p, 10) for n, path in zip(names, paths, strict=True) for p in prompts}
    assert served == alone
    assert len({served[(n, prompts[0])] for n in names}) == 3  # each adapter really changes the answer
    assert load["a1"] == load["a2"] == load["base"]  # one scheduler (one worker, one batch) for all three

    async def mixed() -> list[str]:  # all six in one batch, each row with its own adapter
        scheduler = Scheduler(engines[0], max_batch=8, start=False)
        loop = asyncio.get_running_loop()
        jobs = [Job(e.prompt_ids([Message("user", p)]), GenerationOptions(10, **GREEDY), [], loop, adapter=e.adapter)
                for e in engines for p in prompts]
        for job in jobs:
            scheduler.submit(job)
        scheduler.start()
        texts = [(await _text(job))[0] for job in jobs]
        scheduler.close()
        assert scheduler.peak_batch == 6
        return texts

    assert asyncio.run(mixed()) == [alone[a] for a in asked]


def test_the_judge_asks_a_model_served_by_tuneforge(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.config.schema import JudgeConfig
    from tuneforge.evaluation.judge import judge

    monkeypatch.setenv("TF_JUDGE_KEY", "k-123")
    app = create_app({"tiny": engine}, ServeOptions(api_key="k-123", default_max_tokens=16))
    questions, refs, answers = ["What is 2+2?", "Capital of France?"], ["4", "Paris"], ["4", "Lyon"]
    with serving(app) as url:
        cfg = JudgeConfig(backend="openai", base_url=f"{url}/v1", model="tiny", api_key_env="TF_JUDGE_KEY",
                          max_new_tokens=12)
        result = judge(cfg, questions, refs, answers)
        served = _load(url)["finished"]
        wrong = judge(cfg.model_copy(update={"model": "nope"}), questions, refs, answers)
    assert result.errors == [] and len(result.scores) == 2
    assert sum(served.values()) == 2  # both grading prompts were decoded by the server
    assert len(wrong.errors) == 2 and all("404" in e and "not served" in e for e in wrong.errors)
    assert json.dumps(result.to_dict())  # the summary the eval report writes


def test_a_dora_adapter_gets_its_own_copy_and_still_answers_as_if_alone(base_dir: Path, adapters: list[Path],
                                                                       tmp_path: Path) -> None:
    # peft refuses adapter_names (row-by-row adapters) for DoRA, so a DoRA adapter must not share a batch.
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    dora = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights=False))
    dora.save_pretrained(tmp_path / "dora")
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp_path / "dora")
    paths = [str(base_dir), str(adapters[0]), str(tmp_path / "dora")]
    engines = Engine.load_many(paths)
    assert engines[0].model is engines[1].model and engines[2].model is not engines[0].model
    assert engines[2].adapter is None
    app = create_app(dict(zip(["base", "lora", "dora"], engines, strict=True)), ServeOptions())
    with serving(app) as url:
        got = [httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": name, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8,
            "temperature": 0}).json()["choices"][0]["message"]["content"].strip() for name in ("base", "lora", "dora")]
    assert got == [_single(Engine.load(p), "Hello there", 8) for p in paths]


def test_a_request_over_the_timeout_gets_408_and_its_row_is_freed(engine: Engine) -> None:
    app = create_app({"tiny": engine}, ServeOptions(timeout_s=0.5))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": 1900,
            "temperature": 0}
    with serving(app) as url:
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as s:
            events = [line for line in s.iter_lines() if line.startswith("data: ")]
        deadline = time.time() + 20
        while _load(url)["running"] and time.time() < deadline:
            time.sleep(0.05)
        load = _load(url)
    assert r.status_code == 408 and r.json()["error"]["code"] == "timeout"
    assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["error"]["code"] == "timeout"
    assert load["running"] == 0 and load["finished"] == {"cancelled": 2}


def test_closing_an_engine_stream_early_stops_its_generation_thread(engine: Engine) -> None:
    # The chat tab and `tuneforge chat` stream through Engine.stream: a consumer that goes away must not
    # leave a generation running (a daemon thread inside torch at exit aborts the process).
    import threading

    before = set(threading.enumerate())  # other tests' server threads may end meanwhile: compare identities
    stream = engine.stream([Message("user", "Tell me a long story")], GenerationOptions(1900, temperature=0.0))
    first = next(stream)
    started = time.perf_counter()
    stream.close()
    assert first is not None and time.perf_counter() - started < 5  # stopped at the next token, not after 1900
    assert not set(threading.enumerate()) - before  # the generation thread is gone
    whole = "".join(engine.stream([Message("user", "Hi")], GenerationOptions(8, temperature=0.0,
                                                                               repetition_penalty=1.0)))
    assert whole.strip() == _single(engine, "Hi", 8)  # a stream read to the end is unchanged
