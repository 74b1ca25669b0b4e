"""LLM-as-judge: a model scores answers on a rubric of 1-10 dimensions (docs/evaluation.md).

Two backends behind one registry: ``local`` (any model loaded in-process through the inference engine)
and ``openai`` (any OpenAI-compatible endpoint, e.g. a hosted LLM or ``tuneforge serve``). A reply whose
scores cannot be read, or a request that fails, is counted and reported; it never stops the evaluation.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Protocol

from tuneforge.config.schema import JudgeConfig
from tuneforge.data.records import Message
from tuneforge.utils.names import Registry

PROMPT = """You are a strict grader. Score the answer to the question on each dimension from 1 (very poor) \
to 10 (excellent).

Dimensions:
{dimensions}

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

Reply with exactly one line per dimension, in the form "name: score", and nothing else.
{example}"""


def judge_prompt(rubric: dict[str, str], question: str, reference: str, answer: str) -> str:
    """The grading prompt for one answer."""
    dims = "\n".join(f"- {name}: {question_}" for name, question_ in rubric.items())
    example = "\n".join(f"{name}: 7" for name in rubric)
    return PROMPT.format(dimensions=dims, question=question, reference=reference or "(none)",
                         answer=answer or "(empty)", example="For example:\n" + example)


def parse_scores(reply: str, dimensions: list[str]) -> dict[str, float] | None:
    """Scores of every dimension read from a reply, or None when any is missing or out of 1-10.

    Accepts "name: 7", "name = 7/10", "**Name**: 7", and a JSON object {"name": 7}.
    """
    found = _from_json(reply, dimensions)
    if found is None:
        found = {}
        for name in dimensions:
            match = re.search(rf"{re.escape(name)}\W{{0,6}}?[:：=]?\s*\**\s*(\d+(?:\.\d+)?)(?:\s*/\s*10)?",
                              reply, flags=re.IGNORECASE)
            if match:
                found[name] = float(match.group(1))
    if set(found) != set(dimensions) or any(not 1 <= v <= 10 for v in found.values()):
        return None
    return found


def _from_json(reply: str, dimensions: list[str]) -> dict[str, float] | None:
    match = re.search(r"\{.*\}", reply, flags=re.DOTALL)
    if not match:
        return None
    try:
        obj = json.loads(match.group())
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    lower = {str(k).lower(): v for k, v in obj.items()}
    out = {d: lower[d.lower()] for d in dimensions if isinstance(lower.get(d.lower()), int | float)}
    return {k: float(v) for k, v in out.items()} if out else None


@dataclass
class JudgeResult:
    """Scores per dimension (means over the answers that could be scored) and what failed."""

    dimensions: list[str]
    scores: list[dict[str, float] | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def unparsed(self) -> int:
        """Replies without readable scores (including failed requests)."""
        return sum(1 for s in self.scores if s is None)

    def means(self) -> dict[str, float]:
        """Mean score per dimension and ``overall`` (mean of the dimensions); empty when nothing scored."""
        good = [s for s in self.scores if s is not None]
        if not good:
            return {}
        out = {d: statistics.fmean(s[d] for s in good) for d in self.dimensions}
        out["overall"] = statistics.fmean(out[d] for d in self.dimensions)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"scores": self.means(), "n": len(self.scores), "unparsed": self.unparsed,
                "errors": self.errors[:5]}


class Backend(Protocol):
    """Turns grading prompts into replies; a failed request yields an exception string instead."""

    def replies(self, prompts: list[str]) -> list[str | Exception]:
        """One reply (or the exception) per prompt."""
        ...


class LocalBackend:
    """A model loaded in-process (greedy decoding with its own chat template)."""

    def __init__(self, cfg: JudgeConfig, engine: Any = None) -> None:
        if engine is None:
            from tuneforge.inference.engine import Engine

            engine = Engine.load(cfg.model)
        self.engine, self.max_new_tokens = engine, cfg.max_new_tokens

    def replies(self, prompts: list[str]) -> list[str | Exception]:
        """Greedy replies, batched."""
        from tuneforge.inference.engine import GenerationOptions

        options = GenerationOptions(self.max_new_tokens, temperature=0.0, repetition_penalty=1.0)
        return list(self.engine.generate_batch([[Message("user", p)] for p in prompts], options))


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint."""

    def __init__(self, cfg: JudgeConfig, engine: Any = None) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=cfg.base_url, api_key=os.environ.get(cfg.api_key_env) or "none", max_retries=1)
        self.model, self.max_new_tokens = cfg.model, cfg.max_new_tokens

    def replies(self, prompts: list[str]) -> list[str | Exception]:
        """One request per prompt; failures are returned, not raised."""
        out: list[str | Exception] = []
        for prompt in prompts:
            try:
                reply = self.client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], temperature=0,
                    max_tokens=self.max_new_tokens)
                out.append(reply.choices[0].message.content or "")
            except Exception as exc:  # noqa: BLE001 - any endpoint failure is counted, never fatal
                out.append(exc)
        return out


BACKENDS: Registry[type] = Registry("judge backend")
BACKENDS.register("local", LocalBackend)
BACKENDS.register("openai", OpenAIBackend)


def judge(cfg: JudgeConfig, questions: list[str], references: list[str], answers: list[str],
          backend: Backend | None = None) -> JudgeResult:
    """Score every answer on the rubric.

    Args:
        cfg: The judge section (backend, model, endpoint, rubric).
        questions, references, answers: Parallel lists.
        backend: A ready backend (tests and callers that already hold a model); built from ``cfg`` when None.
    """
    backend = backend or BACKENDS.get(cfg.backend)(cfg)
    dims = list(cfg.rubric)
    prompts = [judge_prompt(cfg.rubric, q, r, a) for q, r, a in zip(questions, references, answers, strict=True)]
    result = JudgeResult(dims)
    for reply in backend.replies(prompts):
        if isinstance(reply, Exception):
            result.scores.append(None)
            result.errors.append(f"{type(reply).__name__}: {reply}")
        else:
            result.scores.append(parse_scores(reply, dims))
    return result
