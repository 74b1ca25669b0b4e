"""``tuneforge data check``: read everything, process it the way training will, report every problem."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.catalog import default_stage_of_kind
from tuneforge.config.schema import RunConfig
from tuneforge.data.loader import LoadedData, load_data, stage_problems
from tuneforge.data.processors import ProcessOptions, ProcessStats, process_examples
from tuneforge.data.quality import (
    control_token_warnings,
    find_duplicates,
    length_summary,
    phrase_diversity,
    serialised_json_warnings,
    volume_warnings,
)
from tuneforge.data.records import Example
from tuneforge.data.templates import ChatTemplate
from tuneforge.data.templates.check import template_warnings
from tuneforge.data.tokenize import PieceEncoder
from tuneforge.utils.errors import Problem

#: Truncated records listed by location in the report.
SHOWN_TRUNCATED = 10


@dataclass
class CheckReport:
    """Everything ``data check`` found; ``to_json`` is the ``--json`` output."""

    records: int
    format: str
    formats: dict[str, int]
    kinds: dict[str, int]
    datasets: list[dict[str, Any]]
    errors: list[Problem]
    warnings: list[Problem]
    duplicates: dict[str, Any]
    truncated: int
    truncated_records: list[dict[str, Any]]
    dropped: dict[str, int]
    token_lengths: dict[str, float]
    max_length: int
    leading_phrases: list[dict[str, Any]]
    placeholders: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """One JSON-serialisable object."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("errors", "warnings")}
        out["errors"] = [p.to_dict() for p in self.errors]
        out["warnings"] = [p.to_dict() for p in self.warnings]
        out["ok"] = self.ok
        return out


def check_data(cfg: RunConfig, tokenizer: Any, template: ChatTemplate, stage: str | None = None) -> CheckReport:
    """Run every check of docs/data.md on the config's datasets.

    Args:
        cfg: The run config (data, template options, stage and method).
        tokenizer: The model's tokenizer (lengths are in its tokens).
        template: The chat template training will use.
        stage: Stage to check against; default ``cfg.training.stage``; ``auto`` infers it from the data.
    """
    data = load_data(cfg.data)
    examples = data.examples
    stage = infer_stage(examples) if stage == "auto" else stage or cfg.training.stage
    stats = _process_all(examples, cfg, tokenizer, template)
    errors = data.errors + stage_problems(examples, stage) + stats.problems
    warnings = data.warnings + template_warnings(template, tokenizer)
    if not examples:
        errors.append(Problem("no usable examples", field="data.datasets", fix="fix the problems listed above"))
    warnings += volume_warnings(len(examples), stage, cfg.method.name)
    dups = find_duplicates(examples)
    if dups.exact or dups.near:
        warnings.append(Problem(f"{dups.exact} exact and {dups.near} near-duplicate records", field="data.datasets",
                                fix="remove duplicates; they over-weight some answers and leak into the test split",
                                severity="warning"))
    phrases, phrase_warnings = phrase_diversity(examples)
    warnings += phrase_warnings + control_token_warnings(examples, list(_added_tokens(tokenizer)))
    warnings += serialised_json_warnings(examples)
    truncated_at = [examples[i] for i in stats.truncated_at]
    lost = stats.loss_warning(cfg.data.max_length)
    if lost is not None:
        warnings.append(lost)
    return CheckReport(
        records=sum(r.records for r in data.reports), format=_format_name(data), formats=_formats(data),
        kinds=dict(Counter(ex.kind for ex in examples)), datasets=[_dataset_json(r) for r in data.reports],
        errors=errors, warnings=warnings,
        duplicates={"exact": dups.exact, "near": dups.near, "examples": [list(p) for p in dups.pairs]},
        truncated=stats.truncated + stats.dropped.get("prompt longer than max_length", 0),
        truncated_records=[_where(ex) for ex in truncated_at[:SHOWN_TRUNCATED]], dropped=stats.dropped,
        token_lengths=length_summary(stats.lengths), max_length=cfg.data.max_length, leading_phrases=phrases,
        placeholders=dict(data.unfilled))


#: The stage a file of each example kind is checked against when no stage is given.
_STAGE_OF_KIND = default_stage_of_kind()


def infer_stage(examples: list[Example]) -> str:
    """The stage the most common example kind trains with (sft for no examples)."""
    kinds = Counter(ex.kind for ex in examples)
    return _STAGE_OF_KIND[kinds.most_common(1)[0][0]] if kinds else "sft"


def _process_all(examples: list[Example], cfg: RunConfig, tokenizer: Any, template: ChatTemplate) -> ProcessStats:
    """Process each kind of example as training would; merge the statistics (indices into ``examples``)."""
    total = ProcessStats(examples=len(examples))
    encoder = PieceEncoder(tokenizer)
    for kind in sorted({ex.kind for ex in examples}):
        index = [i for i, ex in enumerate(examples) if ex.kind == kind]
        opts = ProcessOptions(tokenizer, template, cfg.data.max_length, cfg.template.train_on_prompt,
                              cfg.template.mask_history, encoder)
        stats = process_examples([examples[i] for i in index], opts)
        total.kept += stats.stats.kept
        total.truncated += stats.stats.truncated
        total.turns_dropped += stats.stats.turns_dropped
        total.lengths += stats.stats.lengths
        total.truncated_at += [index[i] for i in stats.stats.truncated_at]
        total.problems += stats.stats.problems
        for reason, n in stats.stats.dropped.items():
            total.dropped[reason] = total.dropped.get(reason, 0) + n
    return total


def _added_tokens(tokenizer: Any) -> set[str]:
    return {t for t in (getattr(tokenizer, "added_tokens_encoder", None) or {}) if len(t) > 2}


def _format_name(data: LoadedData) -> str:
    names = {r.format for r in data.reports}
    return names.pop() if len(names) == 1 else "mixed"


def _formats(data: LoadedData) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in data.reports:
        out[r.format] += r.records
    return dict(out)


def _dataset_json(r: Any) -> dict[str, Any]:
    return {"name": r.name, "files": r.files, "format": r.format, "records": r.records, "invalid": r.invalid,
            "used": r.used, "kinds": dict(r.kinds)}


def _where(ex: Example) -> dict[str, Any]:
    return {"dataset": ex.origin.dataset, "file": ex.origin.file, "index": ex.origin.index, "line": ex.origin.line}
