"""The processor registry and what every processor returns."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.records import Example
from tuneforge.data.templates import ChatTemplate, TemplateError
from tuneforge.data.tokenize import PieceEncoder
from tuneforge.utils.errors import Problem
from tuneforge.utils.names import Registry

#: Examples rendered and tokenized per batch (one call into the Rust tokenizer).
CHUNK = 1024
#: Share of the examples the advised max_length keeps whole.
KEEP_SHARE = 0.95
#: Share of training examples truncated or dropped above which training warns (console, data report, report).
LOST_SHARE_WARN = 0.05
#: Smaller batches when rendering of the next batch overlaps tokenization of this one.
PIPELINE_CHUNK = 128


@dataclass
class ProcessOptions:
    """What every processor needs besides the examples."""

    tokenizer: Any
    template: ChatTemplate
    max_length: int
    train_on_prompt: bool = False
    mask_history: bool = False
    encoder: PieceEncoder | None = None
    labels: dict[str, int] | None = None  # classification: the run's label -> id (processors/labels.py)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Tokenize rendered texts (cached pieces between special tokens)."""
        if self.encoder is None:
            self.encoder = PieceEncoder(self.tokenizer)
        return self.encoder(texts)


@dataclass
class ProcessStats:
    """Counts that make truncation and dropping visible (never silent).

    Attributes:
        examples: Examples given.
        kept: Examples in the output (rows, for pt: documents).
        truncated: Examples that lost tokens to ``max_length``.
        dropped: Examples removed entirely, by reason.
        turns_dropped: Whole assistant turns removed by truncation (multi-turn conversations).
        lengths: Untruncated token length of every example, in input order.
        truncated_at: Indices (into the input) of truncated examples.
        problems: Examples the template could not render, located.
    """

    examples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    turns_dropped: int = 0
    lengths: list[int] = field(default_factory=list)
    truncated_at: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Examples that did not reach training whole: truncated or dropped."""
        return self.truncated + sum(self.dropped.values())

    def length_keeping(self, share: float = KEEP_SHARE) -> int:
        """The smallest ``max_length`` that keeps ``share`` of the examples whole (0 without examples)."""
        if not self.lengths:
            return 0
        ordered = sorted(self.lengths)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]

    def loss_warning(self, max_length: int) -> Problem | None:
        """The one warning ``data check`` and training give about truncated and dropped examples (docs/data.md).

        None when nothing was lost. Training shows it when more than :data:`LOST_SHARE_WARN` was lost;
        ``data check`` whenever anything was.
        """
        if not self.lost:
            return None
        dropped = sum(self.dropped.values())
        reasons = ", ".join(f"{k}: {v}" for k, v in self.dropped.items()) or "none"
        keep = self.length_keeping()
        longest = max(self.lengths, default=0)
        fix = (f"set data.max_length: {keep} to keep {KEEP_SHARE:.0%} of the examples whole (the longest has "
               f"{longest} tokens), or shorten the longest records" if keep > max_length else
               "see the reasons above (max_length already keeps 95% whole)")
        return Problem(f"{self.lost} of {self.examples} examples ({self.lost / max(1, self.examples):.0%}) will not "
                       f"be trained whole at max_length={max_length}: {self.truncated} truncated "
                       f"({self.turns_dropped} whole turn(s) cut) and {dropped} dropped ({reasons})",
                       field="data.max_length", fix=fix, severity="warning")

    def drop(self, reason: str) -> None:
        """Count one dropped example."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def template_failed(self, ex: Example, exc: TemplateError) -> None:
        """Record an example the template could not render (dropped, with its location)."""
        self.drop("template error")
        self.problems.append(Problem(str(exc), file=ex.origin.file, index=ex.origin.index, line=ex.origin.line,
                                     fix="check the roles of this record, or choose another template"))


@dataclass
class Processed:
    """Token columns (equal-length lists) plus statistics."""

    columns: dict[str, list[Any]]
    stats: ProcessStats

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


Processor = Callable[[list[Example], ProcessOptions], Processed]
PROCESSORS: Registry[Processor] = Registry("processor")


def process_examples(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Process examples that all have the same kind with that kind's processor."""
    kinds = {ex.kind for ex in examples}
    if len(kinds) > 1:
        raise ValueError(f"cannot process a mix of example kinds {sorted(kinds)} together")
    kind = kinds.pop() if kinds else "sft"
    return PROCESSORS.get(kind)(examples, opts)


def chunks(items: list[Example], size: int = CHUNK) -> list[list[Example]]:
    """Consecutive slices of ``size`` items."""
    return [items[i: i + size] for i in range(0, len(items), size)]


def pipelined(batches: list[list[Example]], render: Callable[[list[Example]], Any],
              texts_of: Callable[[Any], list[str]], encode: Callable[[list[str]], list[list[int]]],
              assemble: Callable[[Any, list[list[int]], int], None]) -> None:
    """Render batch k+1 (Python) while the Rust tokenizer, which releases the GIL, encodes batch k.

    Args:
        batches: Example batches in order.
        render: Batch -> rendered pieces (runs in this thread).
        texts_of: Rendered pieces -> the flat list of texts to tokenize.
        encode: Texts -> token ids (runs in the worker thread).
        assemble: (rendered, token ids of its texts, index of the batch's first example) -> None.
    """
    pending: tuple[Any, Future[list[list[int]]], int] | None = None
    offset = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        for batch in batches:
            rendered = render(batch)
            future = pool.submit(encode, texts_of(rendered))
            if pending is not None:
                assemble(pending[0], pending[1].result(), pending[2])
            pending = (rendered, future, offset)
            offset += len(batch)
        if pending is not None:
            assemble(pending[0], pending[1].result(), pending[2])
