"""Resolve the datasets of a config, read and parse them, fill placeholders, sample and mix.

Nothing here raises for bad data: every problem is collected (errors and warnings) so that
``data check`` can report all of them at once; :func:`require_usable` turns errors into a
:class:`DataError` for commands that must stop.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config.catalog import names_text, stage_kinds
from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.formats import FORMATS, FormatSpec, detect_format, parse_record
from tuneforge.data.placeholders import fill_example
from tuneforge.data.readers import RawRecord, list_data_files, read_file
from tuneforge.data.records import Example, Origin
from tuneforge.data.registry import ResolvedDataset, read_dataset_info, resolve_entry
from tuneforge.utils.errors import DataError, Problem
from tuneforge.utils.names import UnknownNameError

#: Which example kinds each training stage consumes (from the stage table in config/catalog.py).
STAGE_KINDS: dict[str, frozenset[str]] = stage_kinds()


@dataclass
class DatasetReport:
    """Per-dataset counts for reports."""

    name: str
    files: list[str]
    format: str
    kinds: Counter[str] = field(default_factory=Counter)
    records: int = 0
    invalid: int = 0
    used: int = 0


@dataclass
class LoadedData:
    """Examples of every dataset, mixed, with what was found along the way."""

    examples: list[Example]
    reports: list[DatasetReport]
    errors: list[Problem]
    warnings: list[Problem]
    unfilled: Counter[str] = field(default_factory=Counter)


def load_data(cfg: DataConfig, specs: list[DatasetSpec] | None = None) -> LoadedData:
    """Read every dataset in ``specs`` (default ``cfg.datasets``) and mix them.

    Args:
        cfg: The data section (registry, placeholders, default format, max_samples, seed).
        specs: Datasets to load instead of ``cfg.datasets`` (e.g. ``cfg.eval_datasets``).

    Returns:
        The examples with per-dataset reports, errors and warnings; never raises for bad data.
    """
    out = LoadedData([], [], [], [])
    for spec in specs if specs is not None else cfg.datasets:
        resolved = resolve_spec(spec, cfg, out.errors)
        if resolved is None:
            continue
        examples, report = _load_one(resolved, spec, cfg, out)
        sampled = _sample(examples, resolved, cfg.seed)
        report.used = len(sampled)
        out.reports.append(report)
        out.examples += sampled
    if out.unfilled:
        names = ", ".join(f"{{{{{k}}}}} ({n} records)" for k, n in out.unfilled.most_common())
        out.warnings.append(Problem(f"unfilled placeholders: {names}", field="data.placeholders",
                                    fix="give their values, e.g. data.placeholders: {name: Forge, author: Acme}",
                                    severity="warning"))
    return out


def require_usable(data: LoadedData, stage: str, skip_invalid: bool = False, strict_placeholders: bool = False) -> None:
    """Stop with every problem when the data cannot be trained on.

    Raises:
        DataError: on parse errors (unless ``skip_invalid``), kinds the stage cannot use, unfilled
            placeholders when ``strict_placeholders``, or zero usable examples.
    """
    problems = [] if skip_invalid else list(data.errors)
    problems += stage_problems(data.examples, stage)
    if strict_placeholders and data.unfilled:
        problems += [Problem(w.message, field=w.field, fix=w.fix) for w in data.warnings if w.field == "data.placeholders"]
    if not data.examples:
        problems.append(Problem("no usable examples: training on zero examples is refused", field="data.datasets",
                                fix="check the files and the problems above"))
    if problems:
        raise DataError(f"the data cannot be used for stage {stage!r}", problems)


def stage_problems(examples: list[Example], stage: str) -> list[Problem]:
    """Examples whose kind the stage cannot use, summarised per dataset."""
    want = STAGE_KINDS[stage]
    bad = Counter((ex.origin.dataset, ex.kind) for ex in examples if ex.kind not in want)
    return [Problem(f"dataset {ds!r} holds {n} {kind} example(s), but stage {stage!r} needs {' or '.join(sorted(want))}",
                    field="training.stage", fix=_kind_fix(kind))
            for (ds, kind), n in bad.items()]


#: What each example kind is, in the words of the fix for a stage that cannot use it.
_KIND_NOUN = {"pairwise": "preference pairs", "unpaired": "labelled single answers", "pt": "plain text",
              "sft": "conversations (prompts, for ppo and grpo)"}


def _kind_fix(kind: str) -> str:
    """'<kind>: use stage a, b or c', the stages of the table that take this kind."""
    stages = tuple(name for name, kinds in STAGE_KINDS.items() if kind in kinds)
    if not stages:
        return "use a dataset of the right kind"
    return f"{_KIND_NOUN.get(kind, kind + ' examples')}: use stage {names_text(stages)}"


def resolve_spec(spec: DatasetSpec, cfg: DataConfig, errors: list[Problem]) -> ResolvedDataset | None:
    """A spec from the config -> files and format, or a problem."""
    fmt = _format(spec.format if spec.format != "auto" else cfg.format, errors)
    if spec.name is not None and cfg.dataset_info is not None:
        info_path = Path(cfg.dataset_info)
        info, problems = read_dataset_info(info_path)
        errors += problems
        if problems:
            return None
        resolved = resolve_entry(spec.name, info, info_path)
        if isinstance(resolved, Problem):
            if Path(spec.name).exists():  # a bare file name that happens not to be registered
                return ResolvedDataset(spec.name, Path(spec.name), fmt, spec.max_samples or cfg.max_samples,
                                       spec.ratio)
            errors.append(resolved)
            return None
        if fmt is not None:
            resolved.spec = fmt.with_overrides(resolved.columns, {})
        resolved.spec = resolved.spec.with_overrides(spec.columns, spec.tags) if resolved.spec else None
        resolved.max_samples = spec.max_samples or resolved.max_samples or cfg.max_samples
        resolved.ratio = spec.ratio
        return resolved
    path = Path(spec.path or spec.name or "")
    if spec.path is None and not path.exists():
        errors.append(Problem(f"{spec.name!r} is neither a file nor a registered dataset (no data.dataset_info set)",
                              field="data.datasets", fix="give a file path, or set data.dataset_info"))
        return None
    fmt = fmt.with_overrides(spec.columns, spec.tags) if fmt is not None else None
    return ResolvedDataset(path.name, path, fmt, spec.max_samples or cfg.max_samples, spec.ratio, dict(spec.columns))


def _format(name: str, errors: list[Problem]) -> FormatSpec | None:
    if name == "auto":
        return None
    try:
        return FORMATS.get(name)
    except UnknownNameError as exc:
        errors.append(Problem(str(exc), field="format", fix="see `tuneforge data formats`"))
        return None


def _load_one(ds: ResolvedDataset, spec: DatasetSpec, cfg: DataConfig,
              out: LoadedData) -> tuple[list[Example], DatasetReport]:
    """Read and parse every file of one dataset."""
    files = list_data_files(ds.path)
    report = DatasetReport(ds.name, [str(f) for f in files], ds.spec.name if ds.spec else "auto")
    if not files:
        out.errors.append(Problem("folder holds no data files", file=str(ds.path),
                                  fix="put .json/.jsonl/.csv/.parquet/.txt files in it"))
    examples: list[Example] = []
    for path in files:
        result = read_file(path)
        out.errors += result.problems
        report.invalid += sum(1 for p in result.problems if p.index is not None)
        report.records += len(result.records) + sum(1 for p in result.problems if p.index is not None)
        fmt = ds.spec or _detect(result.records, result.file, out.errors, spec, cfg)
        if fmt is None:
            continue
        report.format = fmt.name
        examples += _parse_all(result.records, fmt, Origin(ds.name, result.file, 0), cfg, out, report)
    return examples, report


def _detect(records: list[RawRecord], file: str, errors: list[Problem], spec: DatasetSpec,
            cfg: DataConfig) -> FormatSpec | None:
    fmt = detect_format([r.data for r in records])
    if fmt is None and records:
        keys = ", ".join(sorted(records[0].data))
        errors.append(Problem(f"unknown data format (fields: {keys})", file=file, index=0, line=records[0].line,
                              fix="set format: (see `tuneforge data formats`) or map the fields with columns:"))
    return fmt.with_overrides(spec.columns, spec.tags) if fmt is not None else None


def _parse_all(records: list[RawRecord], fmt: FormatSpec, origin: Origin, cfg: DataConfig, out: LoadedData,
               report: DatasetReport) -> list[Example]:
    examples = []
    for rec in records:
        where = Origin(origin.dataset, origin.file, rec.index, rec.line)
        parsed: Example | list[Problem] = parse_record(rec.data, fmt, where)
        if isinstance(parsed, list):
            out.errors += parsed
            report.invalid += 1
            continue
        for name in fill_example(parsed, cfg.placeholders):
            out.unfilled[name] += 1
        report.kinds[parsed.kind] += 1
        examples.append(parsed)
    return examples


def _sample(examples: list[Example], ds: ResolvedDataset, seed: int) -> list[Example]:
    """``max_samples`` keeps the first N (as LLaMA-Factory does); ``ratio`` samples or repeats, seeded."""
    if ds.max_samples is not None:
        examples = examples[: ds.max_samples]
    if ds.ratio == 1.0 or not examples:
        return examples
    rng = random.Random(seed ^ zlib.crc32(ds.name.encode()))
    whole, frac = divmod(ds.ratio, 1.0)
    out = examples * int(whole)
    out += rng.sample(examples, round(frac * len(examples)))
    return out


def raw_keys(ex: Example) -> Any:
    """Stable identity of an example's content (used for splitting and duplicate detection)."""
    return (ex.kind, ex.system, tuple((m.role, m.content) for m in ex.messages), ex.text,
            *(m.content if m else None for m in (ex.chosen, ex.rejected, ex.completion)), ex.label)


def split_examples(examples: list[Example], cfg: DataConfig) -> tuple[list[Example], list[Example], list[Example]]:
    """The seeded, content-keyed train / validation / test split of ``data.split`` (training and eval share it)."""
    from tuneforge.data.split import split_items

    return split_items(examples, [str(raw_keys(ex)) for ex in examples], cfg.split, cfg.seed)
