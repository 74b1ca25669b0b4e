"""One worker thread per loaded model: requests are decoded together, token by token, with a KV cache.

Continuous batching: a request that arrives while others are being decoded joins the running batch at
the next step (its prompt is prefilled on its own, then its cache rows are left-padded and stacked onto
the running ones), up to ``max_batch`` rows. Rows leave as soon as they finish or their client goes
away, so a disconnected stream frees its slot at the next token. Each row keeps its own temperature,
top-p, token budget, stop strings and, when several LoRA adapters share one base model, its adapter.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tuneforge.inference.engine import Engine, GenerationOptions
from tuneforge.server.protocol import ApiError, cut_at_stop, held_back

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


@dataclass
class Job:
    """One request: its prompt, options and the asyncio queue its pieces of text go to.

    Items put on ``out``: ``("text", str, logprobs)`` pieces, then ``("done", finish_reason, prompt_tokens,
    completion_tokens, logprobs)``, or ``("error", message)``. ``logprobs`` lists the entries of the tokens
    not yet reported (empty unless ``logprobs`` was asked).
    """

    prompt_ids: list[int]
    options: GenerationOptions
    stops: list[str]
    loop: asyncio.AbstractEventLoop
    adapter: str | None = None  # the adapter of a shared peft model to decode with (None: as loaded)
    presence_penalty: float = 0.0  # OpenAI's: subtracted once from the logit of every token already answered
    frequency_penalty: float = 0.0  # ... and this much per time it was answered
    logprobs: int | None = None  # report each token's log-probability and this many alternatives
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    seed: int | None = None  # sample with a generator of its own, seeded
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def put(self, *item: Any) -> None:
        """Hand an item to the request's event loop (thread-safe)."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class Detokenizer:
    """Turns a growing list of token ids into text pieces without decoding the whole list each time.

    Decodes a short window (the last few tokens already shown plus the new ones) and keeps what the
    window adds; the window's leading context keeps byte-level and sentencepiece spacing right, and a
    piece ending in an unfinished multi-byte character waits for the next token.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # tokens already turned into text

    def add(self, token: int) -> str:
        """Append one token; return the text it completes ('' while a character is unfinished)."""
        self.tokens.append(token)
        before = self._decode(self._prefix, self._read)
        after = self._decode(self._prefix, len(self.tokens))
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.tokens)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """Whatever is left at the end (an unfinished character comes out as the replacement mark)."""
        before = self._decode(self._prefix, self._read)
        after = self._decode(self._prefix, len(self.tokens))
        self._prefix = self._read = len(self.tokens)
        return after[len(before):]

    def _decode(self, start: int, end: int) -> str:
        return self.tokenizer.decode(self.tokens[start:end], skip_special_tokens=True)


@dataclass
class _Row:
    job: Job
    detok: Detokenizer
    text: str = ""  # the answer so far
    sent: int = 0  # characters of ``text`` already sent
    finish: str | None = None
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # entries not yet sent
    generator: Any = None  # the row's own torch.Generator when its request gave a seed

    def take_logprobs(self) -> list[dict[str, Any]]:
        """The entries not yet sent (they travel with the next piece of text)."""
        out, self.logprobs = self.logprobs, []
        return out

    @property
    def n_tokens(self) -> int:
        return len(self.detok.tokens)


@dataclass
class _Batch:
    """Rows being decoded together: their cache, attention mask and the token each feeds next."""

    rows: list[_Row]
    cache: Any
    mask: Any  # [rows, cached positions]; 0 marks left padding
    pending: Any  # [rows] the sampled token not yet in the cache
    joinable: bool = field(init=False)  # whether new rows can be stacked on (the layer types never change)

    def __post_init__(self) -> None:
        self.joinable = can_join(self.cache)

    def select(self, keep: list[int]) -> None:
        """Keep only these rows; drop cache columns that have become padding for every row."""
        import torch

        if len(keep) < len(self.rows):
            index = torch.tensor(keep, device=self.mask.device)
            self.cache.batch_select_indices(index)
            self.rows, self.mask, self.pending = [self.rows[i] for i in keep], self.mask[index], self.pending[index]
        first = int(self.mask.any(0).int().argmax())
        if first > 0:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            self.mask = self.mask[:, first:]

    def join(self, other: _Batch) -> None:
        """Stack another batch's rows under these, left-padding the shorter cache."""
        import torch

        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)])
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)])
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(other.mask, width, 1)])
        self.rows += other.rows
        self.pending = torch.cat([self.pending, other.pending])


def _left_pad(tensor: Any, width: int, dim: int) -> Any:
    import torch.nn.functional as F  # noqa: N812

    missing = width - tensor.shape[dim]
    if not missing:
        return tensor
    pad = [0, 0] * (tensor.dim() - dim - 1) + [missing, 0]
    return F.pad(tensor, pad)


def can_join(cache: Any) -> bool:
    """Whether rows can be stacked onto this cache (plain growing layers only, no sliding windows)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


class Scheduler:
    """Owns one loaded model on a worker thread; ``submit`` refuses with 429 when the queue is full."""

    def __init__(self, engine: Engine, max_batch: int = 16, max_queue: int = 64, start: bool = True) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._work, daemon=True, name="tuneforge-scheduler")
        self._stop = threading.Event()
        self.peak_batch = 0  # the most rows decoded together so far
        self.running = 0  # rows in the batch now
        self.finished: Counter[str] = Counter()  # rows by how they ended: stop, length, cancelled, error
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

    def load(self) -> dict[str, Any]:
        """What the worker is doing: rows running, jobs queued, the peak batch, rows finished by reason."""
        return {"running": self.running, "queued": self._queue.qsize(), "peak_batch": self.peak_batch,
                "finished": dict(self.finished)}

    def close(self) -> None:
        """Stop the worker after the current step."""
        self._stop.set()

    def _work(self) -> None:
        batch: _Batch | None = None
        while not self._stop.is_set():
            room = self.max_batch - (len(batch.rows) if batch else 0)
            joinable = batch is None or batch.joinable
            jobs = self._take(room if joinable else 0, wait=batch is None)
            if batch is None and not jobs:
                continue
            rows = batch.rows if batch else []
            try:
                fresh = self._prefill(jobs) if jobs else None
                if batch is None:
                    batch = fresh
                else:
                    self._step(batch)
                    if fresh is not None:
                        batch.join(fresh)
                self.peak_batch = max(self.peak_batch, len(batch.rows))
                batch = self._finish_rows(batch)
            except Exception as exc:  # noqa: BLE001 - a failed step answers its requests, never kills the server
                for job in [r.job for r in rows] + jobs:
                    job.put("error", f"generation failed: {type(exc).__name__}: {exc}")
                self.finished["error"] += len(rows) + len(jobs)
                batch = None
            self.running = len(batch.rows) if batch else 0

    def _take(self, room: int, wait: bool) -> list[Job]:
        """Up to ``room`` queued jobs that are still wanted; waits briefly for the first when idle."""
        jobs: list[Job] = []
        while len(jobs) < room:
            try:
                job = self._queue.get(timeout=0.1) if wait and not jobs else self._queue.get_nowait()
            except queue.Empty:
                break
            if not job.cancelled.is_set():
                jobs.append(job)
        return jobs

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any, jobs: list[Job]) -> Any:
        extra = {}
        if any(j.adapter for j in jobs):  # rows may use different adapters of one peft model
            active = getattr(self.engine.model, "active_adapter", BASE_ADAPTER)
            extra["adapter_names"] = [j.adapter or active for j in jobs]
        return self.engine.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                                 use_cache=True, **extra).logits[:, -1]

    def _prefill(self, jobs: list[Job]) -> _Batch:
        """Run the new prompts (left-padded together) and sample each one's first token."""
        import torch
        from transformers import DynamicCache

        ids, mask = self.engine.left_pad([j.prompt_ids for j in jobs])
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        cache = DynamicCache()
        rows = [_Row(j, Detokenizer(self.engine.tokenizer), generator=_generator(j, ids.device)) for j in jobs]
        with torch.inference_mode():
            logits = self._forward(ids, mask, positions, cache, jobs)
        batch = _Batch(rows, cache, mask, ids.new_zeros(len(jobs)))
        self._sample(batch, logits)
        return batch

    def _step(self, batch: _Batch) -> None:
        """Feed every row its pending token and sample the next."""
        import torch

        positions = batch.mask.sum(-1, keepdim=True)  # real tokens so far = the next position
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], dim=1)
        with torch.inference_mode():
            logits = self._forward(batch.pending[:, None], batch.mask, positions, batch.cache,
                                   [r.job for r in batch.rows])
        self._sample(batch, logits)

    def _sample(self, batch: _Batch, logits: Any) -> None:
        import torch

        device = logits.device
        temps = torch.tensor([r.job.options.temperature for r in batch.rows], device=device)
        top_ps = torch.tensor([r.job.options.top_p for r in batch.rows], device=device)
        # Log-probabilities are the model's own (before penalties and temperature), as OpenAI reports them.
        logps = torch.log_softmax(logits.float(), -1) if any(r.job.logprobs is not None for r in batch.rows) else None
        generators = {i: r.generator for i, r in enumerate(batch.rows) if r.generator is not None}
        batch.pending = sample(penalise(logits, batch.rows), temps, top_ps, generators)
        stop_ids = set(self.engine.stop_ids)
        for i, (row, token) in enumerate(zip(batch.rows, batch.pending.tolist(), strict=True)):
            if logps is not None and row.job.logprobs is not None and token not in stop_ids:
                row.logprobs.append(logprob_entry(self.engine.tokenizer, logps[i], token, row.job.logprobs))
            self._advance(row, token, stop_ids)

    def _finish_rows(self, batch: _Batch) -> _Batch | None:
        """Answer finished rows and drop them (and shared padding) from the batch."""
        for row in batch.rows:
            if row.finish is not None:
                self.finished[row.finish] += 1
                if row.finish != "cancelled":
                    row.job.put("done", row.finish, len(row.job.prompt_ids), row.n_tokens, row.take_logprobs())
        keep = [i for i, r in enumerate(batch.rows) if r.finish is None]
        if not keep:
            return None
        batch.select(keep)
        return batch

    def _advance(self, row: _Row, token: int, stop_ids: set[int]) -> None:
        """Add one token to a row: send the new text that cannot be part of a stop string, or finish."""
        if row.job.cancelled.is_set():
            row.finish = "cancelled"
            return
        if token in stop_ids:
            row.finish = "stop"
        else:
            row.text += row.detok.add(token)
            if row.n_tokens >= row.job.options.max_new_tokens:
                row.finish = "length"
        if row.finish:
            row.text += row.detok.flush()
        text, stopped = cut_at_stop(row.text, row.job.stops)
        if stopped:
            row.finish = "stop"
        # While running, hold back a partial stop string (the next token may complete it).
        end = len(text) if row.finish else len(text) - held_back(text, row.job.stops)
        if end > row.sent:
            row.job.put("text", text[row.sent:end], row.take_logprobs())
            row.sent = end


def penalise(logits: Any, rows: list[_Row]) -> Any:
    """OpenAI's logit bias, presence and frequency penalties for each row (a copy when any applies).

    ``logit[t] += bias[t] - frequency * count[t] - presence * (count[t] > 0)``, counting the row's generated
    tokens.
    """
    import torch

    out = None
    for i, row in enumerate(rows):
        presence, frequency, bias = row.job.presence_penalty, row.job.frequency_penalty, row.job.logit_bias
        if bias:
            out = logits.clone() if out is None else out
            for token, value in bias.items():
                if token < logits.shape[-1]:
                    out[i, token] += value
        if not (presence or frequency) or not row.detok.tokens:
            continue
        out = logits.clone() if out is None else out
        ids = torch.tensor(row.detok.tokens, device=logits.device)
        counts = torch.bincount(ids, minlength=logits.shape[-1])[: logits.shape[-1]].to(logits.dtype)
        out[i] -= frequency * counts + presence * (counts > 0).to(logits.dtype)
    return logits if out is None else out


def _generator(job: Job, device: Any) -> Any:
    """A generator of the request's own when it gave a seed (None: the shared one)."""
    if job.seed is None:
        return None
    import torch

    return torch.Generator(device=device).manual_seed(job.seed)


def logprob_entry(tokenizer: Any, logps: Any, token: int, top: int) -> dict[str, Any]:
    """OpenAI's per-token logprob object: the token, its log-probability, its bytes and the ``top`` best."""
    def one(tok: int) -> dict[str, Any]:
        text = tokenizer.decode([tok])
        return {"token": text, "logprob": float(logps[tok]), "bytes": list(text.encode("utf-8", "replace"))}

    best = logps.topk(top).indices.tolist() if top else []
    return {**one(token), "top_logprobs": [one(t) for t in best]}


def sample(logits: Any, temperatures: Any, top_ps: Any, generators: dict[int, Any] | None = None) -> Any:
    """One token per row with that row's temperature (0 = greedy) and nucleus ``top_p``.

    Rows in ``generators`` draw with their own generator, so a seeded request samples the same tokens
    whatever else shares its batch (up to the logits' own batch-dependent rounding).
    """
    import torch

    logits = logits.float()
    greedy = logits.argmax(-1)
    probs = torch.softmax(logits / temperatures.clamp_min(1e-5)[:, None], dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # keep the smallest prefix whose mass reaches top_p (the first token always stays)
    sorted_p = sorted_p.masked_fill(sorted_p.cumsum(-1) - sorted_p >= top_ps[:, None], 0.0)
    picks = torch.multinomial(sorted_p, 1)
    for i, gen in (generators or {}).items():
        picks[i] = torch.multinomial(sorted_p[i:i + 1], 1, generator=gen)[0]
    drawn = order.gather(-1, picks).squeeze(-1)
    return torch.where(temperatures == 0, greedy, drawn)
