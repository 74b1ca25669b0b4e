"""``tuneforge score``: a reward model's scores for the answers of a data file.

Pairs (chosen/rejected) give both scores plus pairwise accuracy and mean margin; SFT and KTO records give
the score of their (last) answer. Texts are rendered with the template the reward model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.schema import DataConfig
from tuneforge.data.loader import load_data, require_usable
from tuneforge.data.records import Example, Message
from tuneforge.models.reward import RewardScorer, reward_template


@dataclass
class ScoreResult:
    """Per-record scores and, for pairs, accuracy and margin."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    accuracy: float | None = None
    margin: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The summary plus every row."""
        return {"n": len(self.rows), "accuracy": self.accuracy, "margin": self.margin, "rows": self.rows}


def _answers(ex: Example) -> list[tuple[str, Message]]:
    if ex.kind == "pairwise":
        return [("chosen", ex.chosen), ("rejected", ex.rejected)]  # type: ignore[list-item]
    if ex.kind == "unpaired":
        return [("answer", ex.completion)]  # type: ignore[list-item]
    return [("answer", ex.messages[-1])]


def _prompt_messages(ex: Example) -> list[Message]:
    return ex.messages if ex.kind in ("pairwise", "unpaired") else ex.messages[:-1]


#: A stage whose data check fits each example kind.
STAGE_OF_KIND = {"sft": "sft", "pairwise": "rm", "unpaired": "kto"}


def render_answer(template: Any, ex: Example, answer: Message) -> str:
    """Prompt + answer exactly as training rendered them (the answer ends with the end-of-turn token)."""
    turns, _ = template.turns([*_prompt_messages(ex), answer], ex.system, ex.tools)
    return "".join(t.prompt + t.answer for t in turns)


def score_file(model: str, data: str, max_samples: int | None = None) -> ScoreResult:
    """Score every record of ``data`` with the reward model ``model`` (a run folder or model folder)."""
    scorer = RewardScorer.load(model)
    template = reward_template(scorer.tokenizer, model)
    loaded = load_data(DataConfig(datasets=[{"path": data}], max_samples=max_samples))
    kinds = {ex.kind for ex in loaded.examples}
    require_usable(loaded, STAGE_OF_KIND.get(min(kinds), "sft") if kinds else "sft")
    result = ScoreResult()
    for ex in loaded.examples:
        texts = {name: render_answer(template, ex, answer) for name, answer in _answers(ex)}
        scores = dict(zip(texts, scorer.score(list(texts.values())), strict=True))
        result.rows.append({"record": ex.origin.index, **{f"score_{k}": round(v, 4) for k, v in scores.items()}})
    pairs = [r for r in result.rows if "score_chosen" in r]
    if pairs:
        result.accuracy = sum(r["score_chosen"] > r["score_rejected"] for r in pairs) / len(pairs)
        result.margin = sum(r["score_chosen"] - r["score_rejected"] for r in pairs) / len(pairs)
    return result
