"""Loading a trained reward model and scoring texts with it (PPO, the GRPO reward, ``tuneforge score``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.models.loading import load_tokenizer, peft_model_class, resolve_model, trained_folder
from tuneforge.utils.errors import ModelError, Problem


def load_reward_model(name_or_path: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a reward model: a run folder, a merged folder or an adapter folder."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = trained_folder(name_or_path)
    meta = Path(path) / "tuneforge_training.json"
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("stage") != "rm":
        raise ModelError("not a reward model", [Problem(
            f"{name_or_path} was trained with stage {json.loads(meta.read_text())['stage']!r}", field="reward_model",
            fix="point at the run of a `stage: rm` training")])
    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model(base), num_labels=1,
                                                                   dtype=torch.float32)
        model = peft_model_class().from_pretrained(model, path)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model(path), num_labels=1,
                                                                   dtype=torch.float32)
    tokenizer = load_tokenizer(path)
    # The head scores the last non-pad token: pad exactly as training did (the run's tokenizer carries that
    # pad token; a base model's own config may name another one).
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def reward_template(tokenizer: Any, name_or_path: str) -> Any:
    """The chat template a reward model scored its training answers in (its own, with its trained system prompt):
    scoring renders prompt + answer the same way, ending with the template's end-of-turn text."""
    from tuneforge.data.templates import resolve_template
    from tuneforge.models.loading import trained_system

    return resolve_template("auto", tokenizer, trained_system(name_or_path))


@dataclass
class RewardScorer:
    """Scores rendered texts (prompt + answer, as the training template writes them) with a reward model."""

    model: Any
    tokenizer: Any
    batch_size: int = 8
    _encoder: Any = None

    @classmethod
    def load(cls, name_or_path: str) -> RewardScorer:
        """Load from a run folder or model folder (see :func:`load_reward_model`)."""
        return cls(*load_reward_model(name_or_path))

    def score(self, texts: list[str]) -> list[float]:
        """One scalar reward per text."""

        from tuneforge.data.tokenize import PieceEncoder

        if self._encoder is None:  # kept: GRPO scores every step, and the encoder caches its pieces
            self._encoder = PieceEncoder(self.tokenizer)
        ids = self._encoder(texts)
        pad = self.model.config.pad_token_id or 0
        device = next(self.model.parameters()).device
        out: list[float] = []
        for i in range(0, len(ids), self.batch_size):
            out += self.score_ids(ids[i: i + self.batch_size], pad, device)
        return out

    def score_ids(self, batch: list[list[int]], pad: int, device: Any) -> list[float]:
        """Scores of token sequences (right-padded into one batch)."""
        import torch

        width = max(len(x) for x in batch)
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=device)
        with torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        return logits[:, 0].float().tolist()
