"""A trained classifier (``seq_cls`` / ``token_cls`` runs): loading, class probabilities and word tags."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.models.loading import load_tokenizer, peft_model_class, resolve_model, trained_folder
from tuneforge.utils.errors import ModelError, Problem

#: A run of characters of a script written without spaces (CJK): tagged one character at a time.
_UNSPACED_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

#: stage -> transformers auto class of its head.
HEADS = {"seq_cls": "AutoModelForSequenceClassification", "token_cls": "AutoModelForTokenClassification"}


def classifier_meta(name_or_path: str) -> dict[str, Any] | None:
    """The training metadata of a classification run or export; None for any other model."""
    try:
        meta_path = Path(trained_folder(name_or_path)) / "tuneforge_training.json"
    except Exception:  # not a run or model folder (a hub name, a GGUF file)
        return None
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return meta if meta.get("stage") in HEADS else None


def split_words(text: str) -> list[str]:
    """Words of a typed sentence for a tagger: split at spaces, and CJK characters one by one (the usual
    unit of Chinese NER data)."""
    out: list[str] = []
    for chunk in text.split():
        buf = ""
        for ch in chunk:
            if _UNSPACED_RUN.match(ch):
                out += [buf, ch] if buf else [ch]
                buf = ""
            else:
                buf += ch
        if buf:
            out.append(buf)
    return out


def head_kwargs(labels: list[str]) -> dict[str, Any]:
    """``from_pretrained`` keywords that give a base the run's head: size and label names."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)}}


def load_head_model(folder: str | Path, meta: dict[str, Any]) -> Any:
    """The trained classifier in fp32: a full model as saved, or base + head + adapter."""
    import torch
    import transformers

    auto = getattr(transformers, HEADS[meta["stage"]])
    if not (Path(folder) / "adapter_config.json").is_file():  # full, or an adapter merged by export
        return auto.from_pretrained(str(folder), dtype=torch.float32).eval()
    base = auto.from_pretrained(resolve_model(meta["base_model"]), dtype=torch.float32, **head_kwargs(meta["labels"]))
    return peft_model_class().from_pretrained(base, str(folder)).eval()


@dataclass
class Classifier:
    """A classifier with its tokenizer and label names."""

    model: Any
    tokenizer: Any
    labels: list[str]
    stage: str
    max_length: int = 512  # the training length: longer inputs are cut as training cut them
    batch_size: int = 16

    @classmethod
    def load(cls, name_or_path: str) -> Classifier:
        """Load a ``seq_cls`` / ``token_cls`` run folder, its ``model/`` folder or an export of it.

        Raises:
            ModelError: the folder holds no classifier.
        """
        meta = classifier_meta(name_or_path)
        if meta is None:
            raise ModelError("not a classifier", [Problem(
                f"{name_or_path} was not trained with stage seq_cls or token_cls", field="run",
                fix="point at the run folder of a classification training")])
        folder = trained_folder(name_or_path)
        tokenizer = load_tokenizer(folder)
        model = load_head_model(folder, meta)
        model.config.pad_token_id = tokenizer.pad_token_id  # pad exactly as training did
        return cls(model, tokenizer, list(meta["labels"]), meta["stage"], int(meta.get("max_length") or 512))

    @property
    def token_level(self) -> bool:
        """Whether it tags words (token_cls) rather than whole texts."""
        return self.stage == "token_cls"

    def probabilities(self, texts: list[str]) -> list[list[float]]:
        """Class probabilities of each text (seq_cls), in the order of :attr:`labels`."""
        rows = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [p[0] for p in self._forward(rows, [[0]] * len(rows))]

    def classify(self, texts: list[str]) -> list[str]:
        """The most probable label of each text."""
        return [self.labels[max(range(len(p)), key=p.__getitem__)] for p in self.probabilities(texts)]

    def tag_probabilities(self, sentences: list[list[str]]) -> list[list[list[float]]]:
        """Tag probabilities of each word (token_cls), read at the word's first token."""
        from tuneforge.data.processors.labels import word_pieces

        opening = self._opening()
        rows, firsts = [], []
        for words in sentences:
            ids, starts = list(opening), []
            for piece in word_pieces(words, self.tokenizer):
                starts.append(len(ids))
                ids += piece or [self.tokenizer.unk_token_id or 0]
            rows.append(ids + self._closing(opening))
            firsts.append(starts)
        return self._forward(rows, firsts)

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        """The most probable tag of each word."""
        return [[self.labels[max(range(len(p)), key=p.__getitem__)] for p in words]
                for words in self.tag_probabilities(sentences)]

    def _opening(self) -> list[int]:
        head = self.tokenizer("", add_special_tokens=True)["input_ids"]
        starts = {getattr(self.tokenizer, "cls_token_id", None), getattr(self.tokenizer, "bos_token_id", None)}
        return [i for i in head if i in starts]

    def _closing(self, opening: list[int]) -> list[int]:
        return self.tokenizer("", add_special_tokens=True)["input_ids"][len(opening):]

    def _forward(self, rows: list[list[int]], positions: list[list[int]]) -> list[list[list[float]]]:
        """Softmax of the head at ``positions`` of each row (a text's head reads position 0 of its logits)."""
        import torch

        limit, special = self.max_length, set(self.tokenizer.all_special_ids)
        pad = self.model.config.pad_token_id or 0
        device = next(self.model.parameters()).device
        out: list[list[list[float]]] = []
        for i in range(0, len(rows), self.batch_size):
            batch = [r if len(r) <= limit else r[: limit - 1] + [r[-1]] if r[-1] in special else r[:limit]
                     for r in rows[i: i + self.batch_size]]
            width = max(len(r) for r in batch)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in batch], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch], device=device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            probs = torch.softmax(logits, dim=-1)
            for row, where in zip(probs, positions[i: i + self.batch_size], strict=True):
                row = row[None] if row.dim() == 1 else row  # a text: one distribution
                out.append([row[min(p, row.shape[0] - 1)].tolist() for p in where])
        return out
