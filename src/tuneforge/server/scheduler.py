"""One worker thread per model: queued requests are decoded together, token by token, with a KV cache.

Requests waiting when the worker is free form a batch (up to ``max_batch``); rows leave the batch as
soon as they finish or their client goes away (their cache rows are dropped), so a disconnected
stream frees its slot at the next token. Each row keeps its own temperature, top-p, token budget and
stop strings. New requests wait for the next batch (no joining mid-batch yet).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from tuneforge.inference.engine import Engine, GenerationOptions
from tuneforge.server.protocol import ApiError, cut_at_stop, held_back


@dataclass
class Job:
    """One request: its prompt, options and the asyncio queue its pieces of text go to.

    Items put on ``out``: ``("text", str)`` pieces, then ``("done", finish_reason, prompt_tokens,
    completion_tokens)``, or ``("error", message)``.
    """

    prompt_ids: list[int]
    options: GenerationOptions
    stops: list[str]
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def put(self, *item: Any) -> None:
        """Hand an item to the request's event loop (thread-safe)."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


@dataclass
class _Row:
    job: Job
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded answer already sent
    finish: str | None = None


class Scheduler:
    """Owns one engine's model on a worker thread; ``submit`` refuses with 429 when the queue is full."""

    def __init__(self, engine: Engine, max_batch: int = 8, max_queue: int = 64, start: bool = True) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._work, daemon=True, name="tuneforge-scheduler")
        self._stop = threading.Event()
        if start:
            self.start()

    def start(self) -> None:
        """Start the worker (``start=False`` lets a caller queue several jobs first, as one batch)."""
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; raises a 429 ``ApiError`` when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ApiError(429, "the server is busy: too many queued requests; retry later",
                           code="rate_limit_exceeded") from None

    def close(self) -> None:
        """Stop the worker after the current batch."""
        self._stop.set()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            jobs = [j for j in jobs if not j.cancelled.is_set()]
            try:
                if jobs:
                    self._run(jobs)
            except Exception as exc:  # noqa: BLE001 - a failed batch answers its requests, never kills the server
                for job in jobs:
                    job.put("error", f"generation failed: {type(exc).__name__}: {exc}")

    def _run(self, jobs: list[Job]) -> None:
        import torch
        from transformers import DynamicCache

        model, device = self.engine.model, self.engine.model.device
        rows = [_Row(j) for j in jobs]
        ids, mask = self.engine.left_pad([j.prompt_ids for j in jobs])
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        cache = DynamicCache()
        temps = torch.tensor([j.options.temperature for j in jobs], device=device)
        top_ps = torch.tensor([j.options.top_p for j in jobs], device=device)
        stop_ids = set(self.engine.stop_ids)
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                        use_cache=True)
            while rows:
                tokens = sample(out.logits[:, -1], temps, top_ps).tolist()
                for row, token in zip(rows, tokens, strict=True):
                    self._advance(row, token, stop_ids)
                keep = [i for i, r in enumerate(rows) if r.finish is None]
                if len(keep) < len(rows):
                    for r in rows:
                        if r.finish is not None and r.finish != "cancelled":
                            r.job.put("done", r.finish, len(r.job.prompt_ids), len(r.tokens))
                    if not keep:
                        return
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    rows, mask, positions = [rows[i] for i in keep], mask[index], positions[index]
                    temps, top_ps = temps[index], top_ps[index]
                    tokens = [tokens[i] for i in keep]
                mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
                positions = positions[:, -1:] + 1
                out = model(input_ids=torch.tensor(tokens, device=device)[:, None], attention_mask=mask,
                            position_ids=positions, cache=cache, use_cache=True)

    def _advance(self, row: _Row, token: int, stop_ids: set[int]) -> None:
        """Add one token to a row: send the new text that cannot be part of a stop string, or finish."""
        if row.job.cancelled.is_set():
            row.finish = "cancelled"
            return
        if token in stop_ids:
            row.finish = "stop"
        else:
            row.tokens.append(token)
        text = self.engine.tokenizer.decode(row.tokens, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, row.job.stops)
        if stopped:
            row.finish = "stop"
        elif row.finish is None and len(row.tokens) >= row.job.options.max_new_tokens:
            row.finish = "length"
        # While running, hold back a partial stop string and an unfinished multi-byte character.
        end = len(text) if row.finish else len(text) - held_back(text, row.job.stops)
        if not row.finish and text.endswith("\ufffd"):
            end = min(end, len(text) - 1)
        if end > row.sent:
            row.job.put("text", text[row.sent:end])
            row.sent = end


def sample(logits: Any, temperatures: Any, top_ps: Any) -> Any:
    """One token per row with that row's temperature (0 = greedy) and nucleus ``top_p``."""
    import torch

    logits = logits.float()
    greedy = logits.argmax(-1)
    probs = torch.softmax(logits / temperatures.clamp_min(1e-5)[:, None], dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # keep the smallest prefix whose mass reaches top_p (the first token always stays)
    sorted_p = sorted_p.masked_fill(sorted_p.cumsum(-1) - sorted_p >= top_ps[:, None], 0.0)
    drawn = order.gather(-1, torch.multinomial(sorted_p, 1)).squeeze(-1)
    return torch.where(temperatures == 0, greedy, drawn)
