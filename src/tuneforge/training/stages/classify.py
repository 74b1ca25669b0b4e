"""Classification: ``seq_cls`` (one label per text) and ``token_cls`` (one tag per word).

The base gets a classification head (``AutoModelFor{Sequence,Token}Classification``) sized by the run's
label set, which is read from the data (every class of the training and validation files, sorted) and saved
with the model as ``id2label`` / ``label2id`` and in ``tuneforge_training.json``. An encoder (BERT) pools
its first token; a decoder scores its last real token (sequence) or every token (tagging). LoRA and the
other adapters train their matrices plus the whole new head (PEFT's SEQ_CLS / TOKEN_CLS tasks keep
``classifier`` / ``score`` trainable and saved). Validation logs accuracy and macro-F1
(docs/evaluation.md, "Classification").
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import Trainer

from tuneforge.config.schema import RunConfig
from tuneforge.training.stages.base import Stage, StageInputs
from tuneforge.training.trainer import RunTrainerMixin
from tuneforge.utils.errors import DataError, Problem

#: Modules of a classification head: never quantized (they start random and train in full precision).
HEAD_MODULES = ("classifier", "score", "pooler")
#: Label set per data config (read once per run: the model's head and the processors need the same ids).
_LABELS: dict[str, list[str]] = {}


class ClassificationTrainer(RunTrainerMixin, Trainer):
    """transformers' Trainer (the head's own cross-entropy) with tuneforge checkpoints and token counts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_seen = 0
        # The heads' forward takes **kwargs, so Trainer assumes the loss is already normalised over the
        # accumulated step (num_items_in_batch) and does not divide it by the accumulation; their
        # cross-entropy is a per-batch mean, so without this the loss and the gradient are accumulation x
        # too large.
        self.model_accepts_loss_kwargs = False


def run_labels(cfg: RunConfig) -> list[str]:
    """The run's classes: every label of ``data.datasets`` and ``data.eval_datasets``, sorted.

    Raises:
        DataError: fewer than two classes (a classifier needs a choice).
    """
    from tuneforge.data.loader import load_data, require_usable
    from tuneforge.data.processors.labels import label_set

    key = cfg.data.model_dump_json()
    if key not in _LABELS:
        parts = [load_data(cfg.data)] + ([load_data(cfg.data, cfg.data.eval_datasets)] if cfg.data.eval_datasets else [])
        for part in parts:  # unreadable files and bad records are reported here, before a head is sized
            require_usable(part, cfg.training.stage, skip_invalid=cfg.data.skip_invalid)
        labels = label_set([ex for part in parts for ex in part.examples])
        if len(labels) < 2:
            raise DataError("a classifier needs at least two classes", [Problem(
                f"the data has {len(labels)} label(s): {labels}", field="data.datasets",
                fix="add examples of the other classes")])
        _LABELS[key] = labels
    return _LABELS[key]


def classification_pad_token(tokenizer: Any) -> str:
    """The padding token of a classifier: the tokenizer's own where it has one, else one that never ends a
    real text (a decoder's head reads the last token that is not padding; see ``score_pad_token``)."""
    from tuneforge.training.stages.reward import score_pad_token

    return tokenizer.pad_token if tokenizer.pad_token not in (None, tokenizer.eos_token) else score_pad_token(tokenizer)


class ClassifyStage(Stage):
    """What both classification stages share; subclasses name the head and the collator."""

    policy = False
    generates_in_memory = False
    forgetting_guard = False
    uses_template = False
    metrics = ("accuracy", "macro_f1")
    trainer_class = ClassificationTrainer
    layout_options = ()  # padded batches, sampled at random
    strategies = ("none", "ddp")
    #: ``AutoModelFor...`` class name of the head.
    auto_class = "AutoModelForSequenceClassification"

    def load_model(self, base: str, cfg: RunConfig, kwargs: dict[str, Any]) -> Any:
        import transformers
        from transformers import AutoTokenizer

        labels = run_labels(cfg)
        if "quantization_config" in kwargs:  # the new head (and BERT's pooler) stay in full precision and train
            quant = copy.copy(kwargs["quantization_config"])
            quant.llm_int8_skip_modules = sorted({*(quant.llm_int8_skip_modules or []), *HEAD_MODULES})
            kwargs = {**kwargs, "quantization_config": quant}
        model = getattr(transformers, self.auto_class).from_pretrained(
            base, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, trust_remote_code=cfg.model.trust_remote_code,
            **kwargs)
        tok = AutoTokenizer.from_pretrained(base)
        model.config.pad_token_id = tok.convert_tokens_to_ids(classification_pad_token(tok))
        if "quantization_config" in kwargs:  # the new head is not quantized; keep it in the hidden states' dtype
            head_module(model).to(model.get_input_embeddings().weight.dtype)
        return model

    def prepare_data(self, cfg: RunConfig, examples: list[Any], opts: Any) -> Any:
        from tuneforge.data.processors.base import process_examples

        opts.labels = {name: i for i, name in enumerate(run_labels(cfg))}
        return process_examples(examples, opts)

    def saved_meta(self, cfg: RunConfig) -> dict[str, Any]:
        return {"labels": run_labels(cfg)}

    def after_method(self, model: Any) -> Any:
        """The head starts random, so it always trains: PEFT's classification tasks keep it trainable (and
        saved); the methods that pick the model's own weights (freeze, bitfit) are given it here."""
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            for p in head_module(model).parameters():
                p.requires_grad_(True)
        return model

    def collator(self, cfg: RunConfig, tokenizer: Any, flash: bool) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if flash else None)

    def build(self, s: StageInputs) -> Any:
        from datasets import Dataset
        from transformers import TrainingArguments

        s.tokenizer.pad_token = classification_pad_token(s.tokenizer)  # saved with the model: predicting pads the same
        drop = ["length"]
        return self.trainer_class(
            model=s.model, args=TrainingArguments(**s.args),
            train_dataset=Dataset.from_dict(s.train).remove_columns(drop),
            eval_dataset=Dataset.from_dict(s.eval).remove_columns(drop) if s.eval else None,
            data_collator=self.collator(s.cfg, s.tokenizer, s.flash), processing_class=s.tokenizer,
            callbacks=s.callbacks, compute_metrics=classification_metrics,
            loraplus_lr_ratio=s.cfg.method.lora.loraplus_lr_ratio if s.adapter else None)

    def configure(self, trainer: Any, cpu: bool, cfg: RunConfig) -> None:
        return None


class SeqClsStage(ClassifyStage):
    """``seq_cls``: text -> one of N labels."""

    name = "seq_cls"


class TokenClsStage(ClassifyStage):
    """``token_cls``: a tag for every word (its first token; the others are not scored)."""

    name = "token_cls"
    auto_class = "AutoModelForTokenClassification"

    def collator(self, cfg: RunConfig, tokenizer: Any, flash: bool) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if flash else None)


def head_module(model: Any) -> Any:
    """The classification head: ``classifier`` (BERT-style) or ``score`` (decoders)."""
    head = getattr(model, "classifier", None)
    return head if head is not None else model.score


def classification_metrics(prediction: Any) -> dict[str, float]:
    """Accuracy and macro-F1 of an evaluation pass (positions labelled -100 skipped)."""
    import numpy as np
    from sklearn.metrics import f1_score

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted, gold = np.argmax(logits, axis=-1).reshape(-1), np.asarray(prediction.label_ids).reshape(-1)
    keep = gold != -100
    predicted, gold = predicted[keep], gold[keep]
    return {"accuracy": float((predicted == gold).mean()) if gold.size else 0.0,
            "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0))}
