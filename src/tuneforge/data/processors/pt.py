"""Continued pre-training: documents -> concatenated, chunked rows with per-document boundaries."""

from __future__ import annotations

from tuneforge.data.processors.base import PROCESSORS, Processed, ProcessOptions, ProcessStats, chunks
from tuneforge.data.records import Example


def process_pt(examples: list[Example], opts: ProcessOptions) -> Processed:
    """Each document gets an EOS, documents are concatenated and cut into ``max_length`` rows.

    Returns:
        Columns ``input_ids``, ``labels`` (all tokens trained), ``seq_lens`` (lengths of the document
        pieces in the row, so a padding-free collator can restart positions and keep documents from
        attending to each other) and ``length``. The last row may be shorter; nothing is thrown away.
    """
    eos = opts.tokenizer.eos_token_id
    stats = ProcessStats(examples=len(examples))
    cols: dict[str, list] = {"input_ids": [], "labels": [], "seq_lens": [], "length": []}
    row: list[int] = []
    lens: list[int] = []
    for batch in chunks(examples):
        for doc in opts.encode([ex.text for ex in batch]):
            doc = doc + [eos] if eos is not None else doc
            stats.lengths.append(len(doc))
            while doc:
                take = doc[: opts.max_length - len(row)]
                row += take
                lens.append(len(take))
                doc = doc[len(take):]
                if len(row) == opts.max_length:
                    _emit(cols, row, lens)
                    row, lens = [], []
    if row:
        _emit(cols, row, lens)
    stats.kept = len(cols["input_ids"])
    return Processed(cols, stats)


def _emit(cols: dict[str, list], row: list[int], lens: list[int]) -> None:
    cols["input_ids"].append(row)
    cols["labels"].append(list(row))
    cols["seq_lens"].append(lens)
    cols["length"].append(len(row))


PROCESSORS.register("pt", process_pt)
