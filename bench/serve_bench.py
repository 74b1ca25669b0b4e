"""``tuneforge serve`` under load: N concurrent streaming clients against the default model.

Each contender is a server started with ``tuneforge serve default --max-batch B`` (a fresh process);
all N requests are sent at once, streaming, greedy (so every contender does the same work), each a
question from ``alpaca_en_demo.json`` with ``max_tokens`` tokens at most. Per contender it prints
requests/s, time to first token p50/p95, completion tokens/s (from the stream's usage chunk) and
errors; 429s are counted apart (they are deliberate only when ``--max-queue`` is below N). With
``--repeats`` > 1 the contenders are interleaved and medians reported; the last line gives each
contender's throughput as a ratio to the first.

Usage: ``python bench/serve_bench.py [--requests 200] [--batches 1,16] [--max-tokens 32] [--repeats 1]
[--max-queue 256]``

Measured on the 2-core CPU (2026-12-02, 200 requests, max_tokens 32): max-batch 1: 0.66 req/s, TTFT p50
158 s, 19.2 tok/s; 16: 3.02 req/s, 29.6 s, 87.8 tok/s (4.56x); 32: 3.86 req/s, 22.2 s, 112.2 tok/s (5.83x);
0 errors each. With --batches 16 --max-queue 50: 51 served, 149 deliberate 429s, 0 other errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "fixtures" / "llamafactory" / "alpaca_en_demo.json"


def questions(n: int) -> list[str]:
    """N short questions from the alpaca demo file (cycled), or generated ones without the fixtures."""
    if DATA.is_file():
        rows = [r["instruction"] for r in json.loads(DATA.read_text(encoding="utf-8")) if len(r["instruction"]) < 200]
    else:
        rows = [f"What is {a} plus {a + 3}?" for a in range(50)]
    return [rows[i % len(rows)] for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(max_batch: int, max_queue: int) -> tuple[subprocess.Popen, str]:
    """``tuneforge serve default`` in a subprocess; returns it and its base URL once /health answers."""
    import httpx

    port = free_port()
    exe = shutil.which("tuneforge") or str(Path(sys.executable).with_name("tuneforge"))
    proc = subprocess.Popen([exe, "serve", "default", "--port", str(port), "--max-batch", str(max_batch),
                             "--max-queue", str(max_queue), "--timeout", "3600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start within 120 s")


async def one(client: Any, url: str, question: str, max_tokens: int) -> dict[str, Any]:
    """One streaming request: status, time to first token, completion tokens, error text."""
    body = {"model": "default", "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    out: dict[str, Any] = {"status": 0, "ttft": None, "tokens": 0, "error": None}
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                out["error"] = (await r.aread()).decode()[:200]
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    out["error"] = event["error"]["message"]
                elif event.get("usage"):
                    out["tokens"] = event["usage"]["completion_tokens"]
                elif out["ttft"] is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                    out["ttft"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a failed request is a counted error, not a crash
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def load(url: str, prompts: list[str], max_tokens: int) -> tuple[list[dict[str, Any]], float]:
    """All requests at once; returns their results and the wall time."""
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one(client, url, q, max_tokens) for q in prompts))
    return list(results), time.perf_counter() - start


def summarise(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in results if r["status"] == 200 and not r["error"]]
    ttfts = sorted(r["ttft"] for r in ok if r["ttft"] is not None)

    def pct(q: float) -> float:
        return ttfts[min(len(ttfts) - 1, int(q * len(ttfts)))] if ttfts else float("nan")

    return {"ok": len(ok), "rejected_429": sum(r["status"] == 429 for r in results),
            "errors": sum(r["status"] not in (200, 429) or (r["status"] == 200 and bool(r["error"]))
                          for r in results),
            "req_per_s": len(ok) / wall, "ttft_p50": pct(0.5), "ttft_p95": pct(0.95),
            "tokens_per_s": sum(r["tokens"] for r in ok) / wall, "wall_s": wall,
            "error_samples": [r["error"] for r in results if r["error"] and r["status"] != 429][:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batches", default="1,16", help="max-batch of each contender, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-queue", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    batches = [int(b) for b in args.batches.split(",")]
    prompts = questions(args.requests)
    runs: dict[int, list[dict[str, Any]]] = {b: [] for b in batches}
    for rep in range(args.repeats):
        for b in batches:  # interleaved: the machine's noise hits every contender alike
            proc, url = start_server(b, args.max_queue)
            try:
                asyncio.run(load(url, prompts[:4], 4))  # warm-up, not measured
                stats = summarise(*asyncio.run(load(url, prompts, args.max_tokens)))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            runs[b].append(stats)
            print(f"repeat {rep + 1} max-batch {b:>3}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()})}", flush=True)
    print(f"\n{args.requests} concurrent streaming requests, max_tokens {args.max_tokens}, greedy, default model; "
          f"medians of {args.repeats}")
    print(f"{'max-batch':>9} {'ok':>5} {'429':>5} {'errors':>6} {'req/s':>7} {'TTFT p50':>9} {'TTFT p95':>9} "
          f"{'tok/s':>7} {'ratio':>6}")
    first = statistics.median(r["tokens_per_s"] for r in runs[batches[0]])
    for b in batches:
        med = {k: statistics.median(r[k] for r in runs[b]) for k in ("ok", "rejected_429", "errors", "req_per_s",
                                                                       "ttft_p50", "ttft_p95", "tokens_per_s")}
        print(f"{b:>9} {med['ok']:>5.0f} {med['rejected_429']:>5.0f} {med['errors']:>6.0f} {med['req_per_s']:>7.2f} "
              f"{med['ttft_p50']:>8.2f}s {med['ttft_p95']:>8.2f}s {med['tokens_per_s']:>7.1f} "
              f"{med['tokens_per_s'] / first:>6.2f}")
    if any(r["errors"] for rs in runs.values() for r in rs):
        sys.exit(1)


if __name__ == "__main__":
    main()
