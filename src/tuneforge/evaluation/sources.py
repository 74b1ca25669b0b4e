"""What is evaluated: the test items, and who answers them (a model in-process, an endpoint, a file).

Every source turns the same list of :class:`EvalItem` into answers, so the metrics and the report do not
care where the answers came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.schema import DatasetSpec, RunConfig
from tuneforge.data.loader import load_data, require_usable, split_examples
from tuneforge.data.readers import read_file
from tuneforge.data.records import MODEL_ROLES, Example, Message
from tuneforge.data.split import SPLIT_NAMES
from tuneforge.utils.errors import DataError, Problem


@dataclass(frozen=True)
class EvalItem:
    """One test question: the conversation before the last answer, and that answer as the reference."""

    prompt: list[Message]
    reference: str
    system: str = ""
    example: Example | None = None  # the whole record (for perplexity on the reference)

    @property
    def question(self) -> str:
        """The last user turn (what a reviewer or judge reads)."""
        users = [m.content for m in self.prompt if m.role == "user"]
        return users[-1] if users else ""


def items_from_examples(examples: list[Example]) -> list[EvalItem]:
    """SFT examples ending with a model turn become items; others are not answerable and are skipped."""
    return [EvalItem(ex.messages[:-1], ex.messages[-1].content, ex.system, ex)
            for ex in examples if ex.kind == "sft" and ex.messages and ex.messages[-1].role in MODEL_ROLES]


def eval_items(cfg: RunConfig, split: str | None = None, file: str | None = None) -> list[EvalItem]:
    """The items to evaluate: ``file`` (or ``evaluation.file``), else a split of the run's data.

    The split is the seeded, content-hashed one training used, so the test split never overlaps the
    training examples.

    Raises:
        DataError: unreadable data, or no answerable example in the chosen split.
    """
    file = file or cfg.evaluation.file
    split = split or cfg.evaluation.split
    if file:
        data = load_data(cfg.data, [DatasetSpec(path=file)])
        require_usable(data, "sft", skip_invalid=cfg.data.skip_invalid, strict_placeholders=True)
        examples, where = data.examples, file
    elif split == "validation" and cfg.data.eval_datasets:
        data = load_data(cfg.data, cfg.data.eval_datasets)
        examples, where = data.examples, "data.eval_datasets"
    else:
        data = load_data(cfg.data)
        require_usable(data, "sft", skip_invalid=cfg.data.skip_invalid, strict_placeholders=True)
        parts = split_examples(data.examples, cfg.data)
        examples, where = parts[SPLIT_NAMES.index(split)], f"the {split} split of data.datasets"
    items = items_from_examples(examples)[: cfg.evaluation.max_samples]
    if not items:
        raise DataError("nothing to evaluate", [Problem(
            f"{where} has no question-answer example", field="evaluation.split",
            fix="give data.split a test share (e.g. [0.7, 0.15, 0.15]) or pass --file TEST.json")])
    return items


class ModelSource:
    """Answers from a model in this process (greedy, with the template it was trained with)."""

    def __init__(self, engine: Any, label: str) -> None:
        self.engine, self.label = engine, label

    def answers(self, items: list[EvalItem], max_new_tokens: int, batch_size: int,
                temperature: float = 0.0) -> list[str]:
        """Greedy answers (sampled ones at ``temperature`` > 0), batched by system prompt (one batch shares one
        system prompt)."""
        from tuneforge.inference.engine import GenerationOptions

        options = GenerationOptions(max_new_tokens, temperature=temperature, top_p=1.0, repetition_penalty=1.0)
        out: list[str | None] = [None] * len(items)
        for system in dict.fromkeys(i.system for i in items):
            idx = [k for k, i in enumerate(items) if i.system == system]
            answers = self.engine.generate_batch([items[k].prompt for k in idx], options, system, batch_size)
            for k, a in zip(idx, answers, strict=True):
                out[k] = a
        return [a or "" for a in out]


class BaseView(ModelSource):
    """The untuned base model: the adapter switched off, or the base weights loaded beside the tuned ones.

    It uses the tuned model's tokenizer and template, so base and tuned see exactly the same prompts.
    """

    def __init__(self, tuned: Any, base_path: str | None) -> None:
        from tuneforge.inference.engine import Engine

        self.adapter = hasattr(tuned.model, "disable_adapter")
        engine = tuned
        if not self.adapter:
            from tuneforge.models.loading import load_for_inference

            model, _ = load_for_inference(base_path or "default")
            engine = Engine(model.eval(), tuned.tokenizer, tuned.template)
        super().__init__(engine, "base")

    def answers(self, items: list[EvalItem], max_new_tokens: int, batch_size: int,
                temperature: float = 0.0) -> list[str]:
        """Answers with the adapter disabled (or from the separately loaded base)."""
        with self.off():
            return super().answers(items, max_new_tokens, batch_size, temperature)

    @contextlib.contextmanager
    def off(self) -> Iterator[Any]:
        """Inside: the model computes as the base model."""
        if self.adapter:
            with self.engine.model.disable_adapter():
                yield self.engine.model
        else:
            yield self.engine.model


class EndpointSource:
    """Answers from any OpenAI-compatible chat endpoint (a hosted LLM, or ``tuneforge serve``)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, label: str = "endpoint") -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=1)
        self.model, self.label = model, label

    def answers(self, items: list[EvalItem], max_new_tokens: int, batch_size: int) -> list[str]:
        """One greedy request per item; a failed request raises with the endpoint named."""
        out = []
        for item in items:
            messages = ([{"role": "system", "content": item.system}] if item.system else [])
            messages += [{"role": "assistant" if m.role in MODEL_ROLES else m.role, "content": m.content}
                         for m in item.prompt]
            reply = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                        max_tokens=max_new_tokens)
            out.append((reply.choices[0].message.content or "").strip())
        return out


def read_predictions(path: str) -> tuple[list[EvalItem], list[str]]:
    """Items and predictions from a JSONL/JSON file with ``prediction``, ``reference`` and optional ``prompt``.

    Raises:
        DataError: naming every record that lacks a field, all at once.
    """
    result = read_file(Path(path))
    problems = list(result.problems)
    items, predictions = [], []
    for rec in result.records:
        row = rec.data
        missing = [k for k in ("prediction", "reference") if not isinstance(row.get(k), str)]
        if missing:
            problems += [Problem(f"missing or not text: {k!r}", file=path, index=rec.index, line=rec.line, field=k,
                                 fix='each line needs {"prediction": "...", "reference": "...", "prompt": "..."}')
                         for k in missing]
            continue
        prompt = row.get("prompt")
        items.append(EvalItem([Message("user", str(prompt))] if prompt else [], row["reference"]))
        predictions.append(row["prediction"])
    if problems:
        raise DataError(f"cannot score {path}", problems)
    if not items:
        raise DataError(f"cannot score {path}", [Problem("no predictions", file=path, fix="add JSONL lines")])
    return items, predictions


