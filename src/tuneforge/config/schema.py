"""One pydantic model per config section; unknown keys are errors (``extra="forbid"``).

Every field carries a ``description`` (shown by ``tuneforge config schema``). Fields left as
``None`` are filled later from the advice rules (docs/advice.md) and the filled value is logged
with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneforge.config.catalog import (
    METHOD_NAMES,
    METHOD_TABLE,
    STAGE_NAMES,
    STAGE_TABLE,
    method_spec,
    names_text,
)

# The allowed names come from the one table in config/catalog.py (a tuple subscript spreads into the Literal).
Stage = Literal[STAGE_NAMES]  # type: ignore[valid-type]
Method = Literal[METHOD_NAMES]  # type: ignore[valid-type]
Precision = Literal["auto", "bf16", "fp16", "fp32"]

#: File suffixes tuneforge reads as datasets.
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


class Section(BaseModel):
    """Base of every section: unknown keys are rejected, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """Which model to start from."""

    name_or_path: str = Field(
        "default",
        description="'default' (the embedded SmolLM2-135M-Instruct), a local transformers folder, "
        "a .gguf file, or a hub id (only where the network allows).",
    )
    gguf_file: str | None = Field(None, description="File name inside name_or_path when it is a folder of GGUF files.")
    trust_remote_code: bool = Field(False, description="Allow custom model code from the model folder.")
    device_map: Literal["auto"] | None = Field(
        None, description="'auto': spread the layers of one model over every GPU of one process (model parallelism "
        "for models larger than one GPU; training with adapters, chat, eval, serve). None: one device.")


class DatasetSpec(Section):
    """One dataset: a registry name or a file/folder path, plus how to read and sample it."""

    name: str | None = Field(None, description="Name in data.dataset_info (LLaMA-Factory dataset_info.json).")
    path: str | None = Field(None, description="A json/jsonl/csv/parquet/txt file or a folder of them.")
    format: str = Field("auto", description="Input format (see `tuneforge data formats`); 'auto' detects it.")
    columns: dict[str, str] = Field(default_factory=dict, description="Column mapping, LLaMA-Factory style.")
    tags: dict[str, str] = Field(default_factory=dict, description="Role/content tag mapping for conversations.")
    ratio: float = Field(
        1.0, gt=0, description="Share of this dataset to use: 0.5 samples half, 2.0 repeats it twice (seeded)."
    )
    max_samples: int | None = Field(None, gt=0, description="Use at most this many records of this dataset.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """A plain string is a registry name, or a path when it looks like one (has '/' or a suffix)."""
        if isinstance(value, str):
            looks_like_path = "/" in value or "\\" in value or Path(value).suffix.lower() in DATA_SUFFIXES
            return {"path": value} if looks_like_path else {"name": value}
        return value

    @model_validator(mode="after")
    def _name_or_path(self) -> DatasetSpec:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a dataset_info entry) or 'path' (a file or folder)")
        return self


class DataConfig(Section):
    """Training data: where it is, how it is read, split and cut."""

    datasets: list[DatasetSpec] = Field(
        ..., min_length=1, description="Datasets to mix: registry names, file paths, or full specs."
    )
    dataset_info: str | None = Field(
        None, description="Path to a LLaMA-Factory dataset_info.json; names in 'datasets' are looked up there."
    )
    eval_datasets: list[DatasetSpec] = Field(
        default_factory=list, description="Explicit validation datasets; when empty the data is split by 'split'."
    )
    format: str = Field("auto", description="Default input format for datasets that do not set their own.")
    max_length: int = Field(1024, ge=16, description="Maximum tokens per example (prompt + answer).")
    max_samples: int | None = Field(None, gt=0, description="Use at most this many records from each dataset.")
    placeholders: dict[str, str] = Field(
        default_factory=dict, description="Values for {{name}}-style placeholders, e.g. {name: Forge, author: Acme}."
    )
    split: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train : validation : test ratios (docs/data.md default 7 : 1.5 : 1.5)."
    )
    seed: int = Field(42, description="Seed for sampling, mixing and splitting.")
    replay: list[DatasetSpec] = Field(
        default_factory=list, description="General data mixed into training against forgetting (docs/advice.md)."
    )
    replay_ratio: float = Field(
        0.1, ge=0, le=10, description="Replay examples as a share of the training set (0.1 = 10%)."
    )
    replay_self_answers: bool = Field(
        False, description="Replace replay answers with the base model's own greedy answers (self-distillation).",
    )
    skip_invalid: bool = Field(
        False, description="Skip invalid records (counted and reported) instead of stopping with an error."
    )

    @field_validator("split")
    @classmethod
    def _split_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or v[0] <= 0:
            raise ValueError("ratios must be >= 0 and the train share > 0, e.g. [7, 1.5, 1.5]")
        return v


class TemplateConfig(Section):
    """How conversations are turned into token sequences and which tokens are trained."""

    name: str = Field(
        "auto", description="'auto' uses the tokenizer's own chat template; else a registered template name."
    )
    system: str | None = Field(None, description="System prompt for records that have none.")
    train_on_prompt: bool = Field(False, description="Also train on prompt tokens (default: assistant turns only).")
    mask_history: bool = Field(False, description="Train only on the last assistant turn of each conversation.")


class LoraConfig(Section):
    """LoRA settings (also used by dora and qlora)."""

    rank: int = Field(8, gt=0, description="LoRA rank r: 4-8 simple tasks, 8-16 default, 32-64 complex ones.")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; default 2 x rank.")
    dropout: float | None = Field(None, ge=0, lt=1, description="LoRA dropout; default 0 for large data, 0.05 small.")
    targets: str | list[str] = Field(
        "all-linear", description="'all-linear', 'attention', or a list of module names such as [q_proj, v_proj]."
    )
    use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA (method 'dora' sets it).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r) instead of alpha/r.")
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default", description="Adapter initialisation; 'pissa' starts from the principal singular vectors."
    )
    loraplus_lr_ratio: float | None = Field(
        None, gt=0, description="LoRA+: learning rate of the B matrices = ratio x learning rate (e.g. 16)."
    )


class FreezeConfig(Section):
    """Partial fine-tuning: which layers stay trainable."""

    trainable_layers: int = Field(2, gt=0, description="Train the last N transformer layers.")
    modules: list[str] = Field(default_factory=list, description="Extra module name patterns to train.")
    unfreeze_at: list[float] = Field(
        default_factory=list, description="Progressive unfreezing: at each of these fractions of training (0-1, "
        "rising), trainable_layers more layers below the trainable ones start to train, e.g. [0.33, 0.66].")

    @field_validator("unfreeze_at")
    @classmethod
    def _rising_fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < x < 1 for x in v) or v != sorted(set(v)):
            raise ValueError("fractions must be strictly rising and between 0 and 1, e.g. [0.33, 0.66]")
        return v


class AdaLoraSettings(Section):
    """AdaLoRA: LoRA whose ranks are reallocated by importance (method.lora gives targets, alpha, dropout and
    the final average rank)."""

    init_rank: int | None = Field(None, gt=0, description="Rank every adapted layer starts with; default 1.5 x "
                                  "method.lora.rank (the budget is cut down to method.lora.rank on average).")
    warmup_share: float = Field(0.1, ge=0, lt=1, description="Share of the run's steps trained at full rank before "
                                "ranks are cut (tinit).")
    final_share: float = Field(0.2, ge=0, lt=1, description="Share of the run's steps at the end that train with the "
                               "final ranks fixed (tfinal).")
    interval: int | None = Field(None, gt=0, description="Steps between two budget reallocations (deltaT); default "
                                 "about 50 reallocations over the budgeting phase.")
    orth_reg_weight: float = Field(0.5, ge=0, description="Weight of the orthogonality penalty on the A/B factors.")

    @model_validator(mode="after")
    def _leaves_a_budgeting_phase(self) -> AdaLoraSettings:
        if self.warmup_share + self.final_share >= 1:
            raise ValueError("warmup_share + final_share must be below 1: no steps would be left to reallocate ranks")
        return self


class Ia3Settings(Section):
    """IA3: learned vectors that rescale keys, values and the feed-forward input."""

    targets: list[str] | None = Field(None, description="Module names to rescale; default peft's list for the "
                                      "architecture (llama: k_proj, v_proj, down_proj).")
    feedforward: list[str] | None = Field(None, description="Which of targets are feed-forward layers (their input is "
                                          "rescaled, not their output); default peft's list (llama: down_proj).")


class LnTuningSettings(Section):
    """LN tuning: train copies of the normalisation layers."""

    targets: list[str] | None = Field(None, description="Norm module names; default peft's list for the architecture "
                                      "(llama: input_layernorm, post_attention_layernorm, norm).")


#: The text prompt tuning starts its virtual tokens from (the embeddings of its tokens, repeated to fill them).
PROMPT_INIT_TEXT = "Answer the user's request helpfully, accurately and concisely."


class PromptLearningSettings(Section):
    """prefix, prompt and ptuning: trained virtual tokens in front of every input (docs/advice.md, "The other PEFT methods")."""

    virtual_tokens: int = Field(20, gt=0, le=512, description="Virtual tokens trained in front of every input "
                                "(prefix: per layer, as keys and values); they count against the model's context.")
    init_text: str | None = Field(PROMPT_INIT_TEXT, description="prompt: start the virtual tokens from the "
                                  "embeddings of this text (repeated or cut to virtual_tokens); prefix (without "
                                  "prefix_projection): start from the keys and values the base computes for it. "
                                  "null starts them at random, which trains slower (Lester et al. 2021) and for "
                                  "prefix makes the model far worse than its base at the start.")
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="ptuning: the prompt encoder that produces the "
                                            "virtual tokens.")
    encoder_hidden_size: int | None = Field(None, gt=0, description="ptuning (and prefix with prefix_projection): "
                                            "width of the encoder MLP; default the model's hidden size.")
    prefix_projection: bool = Field(False, description="prefix: produce the per-layer keys and values through an "
                                    "MLP from a small embedding (Li & Liang 2021), instead of training them directly.")


class AdapterSettings(Section):
    """Bottleneck adapters on the attention and MLP outputs: h + up(act(down(h)))."""

    size: int | None = Field(None, gt=0, description="Bottleneck width; default hidden size / 16 (at least 8), the "
                             "reduction factor 16 of Pfeiffer et al.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field("relu", description="Non-linearity between the "
                                                                "down- and up-projection.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    targets: list[str] | None = Field(None, description="Linear layers whose output is adapted; default the "
                                      "attention and MLP output projections (o_proj, down_proj and their names in "
                                      "other architectures).")


class MethodConfig(Section):
    """How parameters are tuned."""

    name: Method = Field(METHOD_NAMES[0], description=f"Tuning method: {names_text(METHOD_NAMES)}. "
                         + "; ".join(f"{m.name}: {m.summary}" for m in METHOD_TABLE) + ".")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    adalora: AdaLoraSettings = Field(default_factory=AdaLoraSettings)
    ia3: Ia3Settings = Field(default_factory=Ia3Settings)
    ln_tuning: LnTuningSettings = Field(default_factory=LnTuningSettings)
    prompt_learning: PromptLearningSettings = Field(default_factory=PromptLearningSettings)
    adapter: AdapterSettings = Field(default_factory=AdapterSettings)
    quant_bits: Literal[4, 8] = Field(4, description="qlora: 4-bit NF4 (double quantisation) or 8-bit.")


class TrainingConfig(Section):
    """Optimisation. ``None`` means: filled from the advice rules of docs/advice.md."""

    stage: Stage = Field(STAGE_NAMES[0], description=f"Training stage: {names_text(STAGE_NAMES)}. "
                        + "; ".join(f"{s.name}: {s.summary}" for s in STAGE_TABLE) + ".")
    epochs: float | None = Field(None, gt=0, description="Epochs; default from the training-set size.")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    learning_rate: float | None = Field(None, gt=0, description="Peak learning rate; default by model size/method.")
    batch_size: int | None = Field(None, gt=0, description="Examples per device per step.")
    gradient_accumulation: int | None = Field(None, gt=0, description="Steps accumulated per optimizer step.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="Share of steps used for warm-up.")
    weight_decay: float | None = Field(None, ge=0, description="AdamW weight decay; default 0.01.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    precision: Precision = Field("auto", description="auto: bf16 where supported, fp16 on older GPUs, else fp32.")
    frozen_precision: Literal["auto", "fp32"] = Field(
        "auto", description="Adapter methods (lora, dora): auto holds the frozen base weights in the compute "
        "precision (bf16/fp16) wherever training computes in it, instead of an fp32 copy cast at every matmul; the "
        "adapter and its optimizer stay fp32. fp32 keeps the fp32 copy (docs/performance.md).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate every N steps; default total/10-20.")
    save_steps: int | None = Field(None, gt=0, description="Save a checkpoint every N steps.")
    eval_on_start: bool = Field(False, description="Also evaluate before the first step (a baseline for every "
                                "validation metric, e.g. DPO's reward margin at step 0).")
    save_total_limit: int = Field(3, gt=0, description="Keep at most this many checkpoints.")
    early_stopping_patience: int | None = Field(None, gt=0, description="Stop after N evals without improvement.")
    keep_best: bool = Field(False, description="At the end, keep the checkpoint with the lowest validation loss as "
                            "the run's model (transformers' best_model_checkpoint); needs a validation split.")
    seed: int = Field(42, description="Training seed.")
    logging_steps: int | None = Field(None, gt=0, description="Log every N optimizer steps; default total/50, >= 1.")
    padding_free: bool = Field(True, description="Concatenate each batch into one row (no padding, no cross-attention).")
    cpu_piece_tokens: int = Field(
        1, gt=0, description="On a CPU, run a padding-free batch as right-padded causal batches of at most this many "
                             "tokens (1: one sequence at a time, the least memory; 1024 measured 1.18x tokens/s at "
                             "1.85x peak memory, docs/performance.md).")
    cpu_allocator: Literal["auto", "heap", "default"] = Field(
        "auto", description="On a CPU under glibc, auto/heap serve large blocks (the vocabulary logits) from the "
        "heap and keep freed memory for the next micro-batch instead of a fresh page-faulting mmap each time; "
        "default leaves glibc as it is (docs/performance.md).")
    group_by_length: bool = Field(True, description="Batch examples of similar length together.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch; default: the usable cores.")

    @model_validator(mode="after")
    def _best_needs_saves_at_evals(self) -> TrainingConfig:
        # transformers can only restore a checkpoint that was saved at an evaluation
        if self.keep_best and self.save_steps and self.eval_steps and self.save_steps % self.eval_steps:
            raise ValueError(f"keep_best needs save_steps ({self.save_steps}) to be a multiple of eval_steps "
                             f"({self.eval_steps}): set save_steps: {self.eval_steps}")
        return self


class AlignmentConfig(Section):
    """Preference and reinforcement stages (rm, dpo, simpo, orpo, kto, ppo, grpo). ``None``: the stage's default."""

    beta: float | None = Field(
        None, gt=0, description="Strength of the preference term: dpo/kto 0.1 (distance from the reference), "
        "simpo 2.0 (reward scale), orpo 0.1 (lambda of the odds-ratio term).")
    dpo_loss: str = Field("sigmoid", description="DPO loss variant of TRL: sigmoid, hinge, ipo, robust, bco_pair, ...")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO target reward margin gamma.")
    sft_weight: float = Field(
        0.0, ge=0, description="Weight of an extra NLL loss on the chosen answers (dpo, simpo): keeps the model "
        "close to the chosen style.")
    precompute_ref: bool = Field(
        False, description="Compute the reference log-probabilities once before training (dpo, kto): no reference "
        "forward per step; with full fine-tuning no second model in memory during training.")
    desirable_weight: float | None = Field(
        None, gt=0, description="KTO: weight of desirable answers; default balances the desirable/undesirable counts.")
    undesirable_weight: float | None = Field(None, gt=0, description="KTO: weight of undesirable answers.")
    reward_model: str | None = Field(
        None, description="ppo (and the grpo reward 'reward_model'): a reward-model run folder, e.g. runs/my-rm.")
    rewards: list[str] = Field(
        default_factory=lambda: ["exact_answer"], description="grpo reward functions: registry names "
        "(exact_answer, regex, format, length, reward_model) or 'module:function'.")
    reward_weights: list[float] | None = Field(None, description="grpo: weight of each reward function (default 1).")
    answer_pattern: str = Field(
        r"(-?\d+(?:\.\d+)?)", description="Regex whose first group is the answer; its last match in an answer "
        "counts (exact_answer); the 'regex'/'format' rewards require a match of it.")
    target_length: int = Field(64, gt=0, description="length reward: completions longer than this many tokens lose "
                               "reward in proportion.")
    num_generations: int = Field(4, ge=2, description="grpo: answers sampled per prompt (the group).")
    max_new_tokens: int = Field(64, gt=0, description="ppo/grpo: length of sampled answers.")
    temperature: float = Field(1.0, gt=0, description="ppo/grpo: sampling temperature.")
    kl_coef: float = Field(0.05, ge=0, description="ppo/grpo: weight of the KL penalty against the reference.")
    ppo_epochs: int = Field(2, gt=0, description="ppo: optimisation passes over each batch of sampled answers.")
    clip_range: float = Field(0.2, gt=0, description="ppo/grpo: clipping of the probability ratio.")
    value_coef: float = Field(0.1, ge=0, description="ppo: weight of the value-head loss.")


class JudgeConfig(Section):
    """LLM-as-judge: a model scores each answer on a rubric (docs/evaluation.md)."""

    backend: Literal["local", "openai"] = Field(
        "local", description="'local': a model loaded in-process; 'openai': any OpenAI-compatible endpoint.")
    model: str = Field("default", description="Local: a model name/folder/run; openai: the model name to ask for.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
    rubric: dict[str, str] = Field(
        default_factory=lambda: {
            "correctness": "Is the answer factually right and consistent with the reference?",
            "relevance": "Does it answer what was asked, without drifting?",
            "fluency": "Is it clear, well-formed language?",
        },
        description="Dimensions to score from 1 to 10, each with the question the judge answers.")
    max_new_tokens: int = Field(128, gt=0, description="Length of the judge's reply.")


class EvaluationConfig(Section):
    """What is measured after training (base vs tuned on the same test split)."""

    metrics: list[Literal["bleu4", "rouge", "exact_match", "ppl", "judge"]] = Field(
        default_factory=lambda: ["bleu4", "rouge", "exact_match", "ppl"], description="Metrics to compute."
    )
    split: Literal["test", "validation", "train"] = Field("test", description="Which split of the data to evaluate.")
    file: str | None = Field(None, description="Evaluate on this data file instead of a split of the training data.")
    max_samples: int | None = Field(None, gt=0, description="Evaluate at most this many examples (seeded order).")
    max_new_tokens: int = Field(256, gt=0, description="Generation length for evaluation answers.")
    batch_size: int = Field(20, gt=0, description="Prompts generated together (20: twice as fast as 8 on a 2-core "
                                                  "CPU, the same greedy answers; as inference.engine.GENERATION_BATCH).")
    normalize: list[Literal["width", "lower", "punct", "space"]] = Field(
        default_factory=lambda: ["width", "lower", "punct", "space"],
        description="Normalisations before exact match: full-width->ASCII, lower case, no punctuation, one space.")
    base: bool = Field(True, description="Also answer with the untuned base model (docs/evaluation.md).")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    auto: bool = Field(True, description="Run evaluation automatically after training when a test split exists.")
    forgetting: bool = Field(True, description="After SFT and alignment runs on a chat model, compare base and tuned "
                             "on the shipped general probes: perplexity, changed answers, leaked training strings.")


class OutputConfig(Section):
    """Where the run folder goes."""

    dir: str = Field("runs", description="Parent folder of run folders.")
    name: str | None = Field(None, description="Run folder name; default derived from the config file name.")
    overwrite: bool = Field(False, description="Overwrite a finished run with the same name.")
    report_to: list[Literal["tensorboard", "wandb", "swanlab", "mlflow"]] = Field(
        default_factory=lambda: ["tensorboard"], description="Experiment trackers that receive the resolved config, "
        "the losses and the evaluation metrics. wandb and swanlab run offline (into <dir>/wandb, <dir>/swanlog) "
        "unless you configured them; mlflow logs to <dir>/mlruns unless MLFLOW_TRACKING_URI is set; tensorboard "
        "writes <run>/tensorboard. [] logs to none.")
    project: str = Field("tuneforge", description="Project (wandb, swanlab) or experiment (mlflow) name; the "
                         "trackers' own environment variables (WANDB_PROJECT, ...) take precedence.")

    @field_validator("report_to")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


class ParamSpace(Section):
    """The range of one searched value: ``choices``, or ``low``..``high`` (integers give integer values)."""

    choices: list[Any] | None = Field(None, description="Values to choose from, e.g. [4, 8, 16].")
    low: float | None = Field(None, description="Lower bound of a range.")
    high: float | None = Field(None, description="Upper bound of a range.")
    log: bool = Field(False, description="Sample the range on a log scale (learning rates).")

    @model_validator(mode="after")
    def _choices_or_range(self) -> ParamSpace:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either 'choices' or both 'low' and 'high'")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class SearchConfig(Section):
    """Hyper-parameter search with Optuna: each trial is a sub-run; the study lives in the run folder."""

    trials: int = Field(10, gt=0, description="Number of trials (pruned and finished ones count).")
    objective: Literal["eval_loss", "bleu4", "rouge1", "rouge2", "rougeL", "exact_match"] = Field(
        "eval_loss", description="eval_loss (minimised) or a metric on the validation split (maximised).")
    space: dict[str, ParamSpace] = Field(
        ..., min_length=1, description="Config keys to search, e.g. training.learning_rate: {low: 1e-5, high: 1e-3, "
        "log: true}; method.lora.rank: {choices: [4, 8, 16]}.")
    pruning: bool = Field(True, description="Stop trials whose intermediate eval loss is worse than the median.")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler.")
    start_with: list[dict[str, Any]] = Field(
        default_factory=list, description="Trials to run first, e.g. the current settings as a baseline.")
    seed: int = Field(42, description="Sampler seed.")

    @field_validator("space")
    @classmethod
    def _known_keys(cls, v: dict[str, ParamSpace]) -> dict[str, ParamSpace]:
        bad = [k for k in v if k.split(".")[0] not in ("training", "method", "data", "template")]
        if bad:
            raise ValueError(f"cannot search {bad}: keys must be dotted config keys such as training.learning_rate")
        return v


class StageConfig(Section):
    """One stage of a multi-stage run: overrides of the sections for this stage only."""

    name: str = Field(..., description="Stage name (its sub-folder is NN-name).")
    data: dict[str, Any] = Field(default_factory=dict, description="Overrides of the data section.")
    template: dict[str, Any] = Field(default_factory=dict, description="Overrides of the template section.")
    method: dict[str, Any] = Field(default_factory=dict, description="Overrides of the method section.")
    training: dict[str, Any] = Field(default_factory=dict, description="Overrides of the training section.")
    alignment: dict[str, Any] = Field(default_factory=dict, description="Overrides of the alignment section.")
    replay_ratio: float = Field(
        0.1, ge=0, le=10, description="Replay of earlier stages' data, as a share of this stage's training set."
    )


Strategy = Literal["none", "ddp", "fsdp", "deepspeed"]


class FsdpConfig(Section):
    """FSDP2 (``fully_shard`` through accelerate) options."""

    sharding: Literal["full_shard", "shard_grad_op"] = Field(
        "full_shard", description="full_shard: weights, gradients and optimizer states sharded (like ZeRO-3); "
        "shard_grad_op: weights gathered between forward and backward (like ZeRO-2, faster, more memory).")
    activation_checkpointing: bool = Field(
        False, description="FSDP's own activation checkpointing (use it instead of training.gradient_checkpointing).")
    cpu_offload: bool = Field(False, description="Keep parameters and gradients in CPU memory between uses.")


class DistributedConfig(Section):
    """Several processes: one per GPU (or N on a CPU), on one machine or several (docs/distributed.md)."""

    strategy: Strategy = Field(
        "none", description="none: one process; ddp: a full copy per process (the model fits one device); fsdp "
        "or deepspeed: weights, gradients and optimizer states sharded across processes (it does not fit).")
    nproc_per_node: int | Literal["auto"] = Field(
        "auto", description="Processes per machine: 'auto' = every GPU (1 without a GPU), or a number "
        "(processes on a CPU).")
    nnodes: int = Field(1, ge=1, description="Machines taking part; run the same command on each (--print-launch).")
    node_rank: int = Field(0, ge=0, description="This machine's index, 0 .. nnodes-1 (0 hosts the rendezvous).")
    master_addr: str = Field("127.0.0.1", description="Address of machine 0, reachable from every machine.")
    master_port: int | None = Field(
        None, ge=1, le=65535, description="Rendezvous port on machine 0; default: a free port on one machine, "
        "29500 across machines.")
    timeout: int = Field(
        300, ge=5, description="Seconds to wait for every machine to join and for any collective operation "
        "before failing with an error instead of hanging.")
    zero_stage: Literal[1, 2, 3] = Field(
        2, description="deepspeed: 1 shards optimizer states, 2 also gradients, 3 also the weights.")
    offload: Literal["none", "optimizer", "optimizer+params"] = Field(
        "none", description="deepspeed: move optimizer states (and with zero_stage 3 the weights) to CPU memory.")
    deepspeed_config: str | None = Field(
        None, description="deepspeed: your own DeepSpeed JSON; values that contradict this config are errors.")
    fsdp: FsdpConfig = Field(default_factory=FsdpConfig)

    @field_validator("nproc_per_node")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("use 'auto' (every GPU) or a number of processes >= 1")
        return v

    @model_validator(mode="after")
    def _node_rank_in_range(self) -> DistributedConfig:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} is outside 0..{self.nnodes - 1} (nnodes={self.nnodes}): "
                             "number the machines 0 .. nnodes-1")
        if self.offload == "optimizer+params" and self.zero_stage != 3:
            raise ValueError("offload 'optimizer+params' needs zero_stage 3 (only ZeRO-3 shards the weights); "
                             "use offload 'optimizer' or zero_stage 3")
        return self


class RunConfig(Section):
    """A whole run: one YAML file, every command accepts it."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    alignment: AlignmentConfig = Field(default_factory=AlignmentConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    search: SearchConfig | None = Field(None, description="Hyper-parameter search (Optuna) over this config.")
    stages: list[StageConfig] = Field(
        default_factory=list,
        description="Multi-stage incremental training: each stage starts from the previous one's result, "
        "replays earlier data and defaults to half the previous learning rate.",
    )

    @model_validator(mode="after")
    def _method_fits_stage(self) -> RunConfig:
        spec = method_spec(self.method.name)
        if spec.stages is not None and self.training.stage not in spec.stages:
            raise ValueError(f"method {spec.name!r} trains only stage {names_text(spec.stages)}, not "
                             f"{self.training.stage!r}: {spec.stage_reason}; use method lora for this stage")
        return self
