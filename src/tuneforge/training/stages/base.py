"""The stage interface: what a stage may change on the one shared training path (``training/runner.py``).

The runner loads the model, the data and the tuning method the same way for every stage, then asks the
stage for its trainer. A stage overrides only what differs: how the model is loaded (a reward model has
a scalar head), how processed columns become a dataset, which arguments class and trainer it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.data.collators import PaddingFreeCollator, padded_collator
from tuneforge.training.trainer import TuneforgeTrainer


@dataclass
class StageInputs:
    """Everything the runner has built when it asks a stage for its trainer."""

    cfg: RunConfig
    model: Any
    tokenizer: Any
    args: dict[str, Any]  # TrainingArguments keywords shared by every stage
    train: dict[str, list[Any]]  # processed columns
    eval: dict[str, list[Any]] | None
    callbacks: list[Any]
    flash: bool  # flash-attention kernels in use (GPU)
    adapter: bool  # the model is a PEFT adapter model


#: ``training`` switches that shape batches (padding-free rows, length-grouped sampling).
LAYOUT_OPTIONS = ("padding_free", "group_by_length")


class Stage:
    """Causal-LM training on input_ids/labels (sft); subclasses change data, model, arguments or trainer.

    Attributes:
        name: The ``training.stage`` value.
        policy: The result generates text (chat, automatic evaluation); False for a reward model.
        metrics: Logged keys (besides loss) plotted into ``plots/<stage>.png``.
        surrogate_loss: The loss is a policy-gradient surrogate (PPO, GRPO), not a likelihood: its level
            and trend say nothing about quality, so the report judges the reward and KL instead.
        forgetting_guard: A chat model's general answers are compared before and after the run
            (docs/evaluation.md, "Forgetting"); continued pre-training is not about chat.
        generates_in_memory: The trained object can answer as it is; False where it is a scorer or wraps
            the policy (a value head), so evaluation after training loads the saved run instead.
    """

    name = "sft"
    policy = True
    metrics: tuple[str, ...] = ()
    surrogate_loss = False
    forgetting_guard = True
    generates_in_memory = True
    #: Examples are rendered with the chat template (False: classifiers read the text as it is).
    uses_template = True
    trainer_class: type = TuneforgeTrainer
    #: ``training`` switches of the batch layout this stage applies.
    layout_options: tuple[str, ...] = LAYOUT_OPTIONS
    #: ``distributed.strategy`` values this stage is tested under (tests/e2e/test_distributed.py).
    strategies: tuple[str, ...] = ("none", "ddp", "fsdp", "deepspeed")

    def ignored_settings(self, cfg: RunConfig) -> list[str]:
        """Warnings for layout switches the user turned on explicitly that this stage does not apply."""
        t = cfg.training
        return [f"training.{name}: true has no effect with stage {self.name!r} (its trainer pads batches and "
                "samples them at random); remove it from the config"
                for name in LAYOUT_OPTIONS
                if name in t.model_fields_set and getattr(t, name) and name not in self.layout_options]

    def load_model(self, base: str, cfg: RunConfig, kwargs: dict[str, Any]) -> Any:
        """The model to tune; a causal LM unless the stage needs another head."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(base, trust_remote_code=cfg.model.trust_remote_code, **kwargs)

    def prepare_data(self, cfg: RunConfig, examples: list[Any], opts: Any) -> Any:
        """Examples -> processed columns (the processor of the examples' kind)."""
        from tuneforge.data.processors.base import process_examples

        return process_examples(examples, opts)

    def train_rows(self, train: Any) -> int:
        """Training rows of the processed split as the trainer will see them (the plan's steps count these)."""
        return len(train)

    def planned_rows(self, train: Any, held_out: Any | None) -> tuple[int, int]:
        """(training, validation) rows as the trainer sees them: what the advice plans steps and evaluations on."""
        return self.train_rows(train), self.train_rows(held_out) if held_out is not None else 0

    def after_method(self, model: Any) -> Any:
        """The model once the tuning method is applied (a classifier makes sure its new head trains)."""
        return model

    def saved_meta(self, cfg: RunConfig) -> dict[str, Any]:
        """What the stage adds to the saved model's ``tuneforge_training.json`` (a classifier's labels)."""
        return {}

    def defaults(self, cfg: RunConfig, train: dict[str, list[Any]]) -> tuple[RunConfig, list[str]]:
        """Stage-specific values filled in (with a reason each) before the trainer is built."""
        return cfg, []

    def build(self, s: StageInputs) -> Any:
        """The trainer for this stage."""
        from datasets import Dataset
        from transformers import TrainingArguments

        return self.trainer_class(
            model=s.model, args=TrainingArguments(**s.args), train_dataset=Dataset.from_dict(s.train),
            eval_dataset=Dataset.from_dict(s.eval) if s.eval else None,
            data_collator=self.collator(s.cfg, s.tokenizer, s.flash), processing_class=s.tokenizer,
            callbacks=s.callbacks,
            loraplus_lr_ratio=s.cfg.method.lora.loraplus_lr_ratio if s.adapter else None)

    def configure(self, trainer: Any, cpu: bool, cfg: RunConfig) -> None:
        """Adjust the built trainer (SFT on CPU: one forward and backward per packed sequence)."""
        trainer.split_packed = cpu and cfg.training.padding_free  # GPUs use varlen flash kernels
        trainer.piece_tokens = cfg.training.cpu_piece_tokens

    def collator(self, cfg: RunConfig, tokenizer: Any, flash: bool) -> Any:
        """Padding-free by default; padded when asked (e.g. kernels that need rectangular batches)."""
        if cfg.training.padding_free:
            return PaddingFreeCollator(flash_attn_kwargs=flash)
        return padded_collator(tokenizer, pad_to_multiple_of=8 if flash else None)


class PretrainStage(Stage):
    """Continued pre-training: rows are chunks of concatenated documents, every token trained."""

    name = "pt"
    forgetting_guard = False


class TrlStage(Stage):
    """A stage trained by one of TRL's trainers: its config class carries the stage's own arguments.

    TRL trainers pad (no padding-free rows), sample batches at random (their collators do not use our
    length-grouped sampler) and keep the tokenized columns tuneforge made with the training template.
    """

    config_class: Any = None
    #: The config has ``max_length`` (set to ``data.max_length``).
    truncates = True
    layout_options = ()
    #: Replicated copies only: a frozen reference or a reward model beside a sharded policy is not tested.
    strategies = ("none", "ddp")

    def arguments(self, s: StageInputs) -> dict[str, Any]:
        """Stage-specific keywords of ``config_class`` (beta, loss type, ...)."""
        return {}

    def dataset(self, columns: dict[str, list[Any]], s: StageInputs) -> Any:
        """Processed columns -> the dataset the TRL trainer reads."""
        from datasets import Dataset

        return Dataset.from_dict(columns)

    def build(self, s: StageInputs) -> Any:
        args = {**s.args, "train_sampling_strategy": "random", **self.arguments(s)}
        if self.truncates:
            args["max_length"] = s.cfg.data.max_length
        return self.trainer_class(
            model=s.model, args=self.config_class(**args), train_dataset=self.dataset(s.train, s),
            eval_dataset=self.dataset(s.eval, s) if s.eval else None, processing_class=s.tokenizer,
            callbacks=s.callbacks, **self.trainer_kwargs(s))

    def trainer_kwargs(self, s: StageInputs) -> dict[str, Any]:
        """Extra keywords of the trainer's constructor (reward functions, ...); trainers with a frozen
        reference get the LoRA init, which decides whether the disabled adapter is that reference."""
        from tuneforge.training.stages.reference import ReferenceMixin

        out: dict[str, Any] = {"loraplus_lr_ratio": s.cfg.method.lora.loraplus_lr_ratio if s.adapter else None}
        if issubclass(self.trainer_class, ReferenceMixin):
            out["lora_init"] = s.cfg.method.lora.init
        return out

    def configure(self, trainer: Any, cpu: bool, cfg: RunConfig) -> None:
        return None
