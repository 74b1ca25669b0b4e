"""The one table of training stages and tuning methods that every other part reads.

The config schema's allowed names, the data loader's stage-to-example-kind rule, ``tuneforge data
check``'s default stage, the held-out evaluation, the advice rules, the web UI's menus and the
registries in ``training/stages`` and ``models/tuning`` are all derived from :data:`STAGE_TABLE` and
:data:`METHOD_TABLE`. Adding a stage or a method is one implementation file plus one row here
(ARCHITECTURE.md, "Adding a stage or a tuning method").

This module imports nothing heavy: the schema and the web UI read it without loading torch. The
implementations are named as ``"module:Class"`` and imported only when a registry is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

#: What a stage optimises. ``language``: next-token likelihood; ``reward``: a scalar scorer;
#: ``preference``: chosen over rejected (or desirable over undesirable) answers against a reference;
#: ``reinforcement``: rewards of the model's own samples; ``classification``: a label per text or per word.
StageFamily = Literal["language", "reward", "preference", "reinforcement", "classification"]
#: Which parameters a method trains and how it is saved. ``full``: all, saved whole; ``partial``: a subset
#: of the model's own weights, saved whole; ``lora``: low-rank adapters configured by ``method.lora``,
#: saved as an adapter; ``adapter``: other PEFT adapters, saved as an adapter.
MethodFamily = Literal["full", "partial", "lora", "adapter"]


@dataclass(frozen=True)
class StageSpec:
    """One training stage.

    Attributes:
        name: The value of ``training.stage``.
        summary: One line for ``--help``, the schema and the web UI.
        family: What the stage optimises (see :data:`StageFamily`).
        kinds: The example kinds (``data/records.py``) it trains on; other kinds are data errors.
        impl: ``"module:Class"`` of its :class:`~tuneforge.training.stages.Stage` subclass.
        checks: Example kinds for which ``tuneforge data check`` picks this stage when none is given.
        evaluation: The held-out evaluation (``evaluation/held_out.py``) that judges the tuned model
            against the base; ``None`` for the language stages, which the generation metrics judge.
        lr_share: For preference and reinforcement stages, the learning rate advised as a share of the
            SFT rate of the same method and model (measured: docs/advice.md, "Learning rate").
    """

    name: str
    summary: str
    family: StageFamily
    kinds: frozenset[str]
    impl: str
    checks: tuple[str, ...] = ()
    evaluation: str | None = None
    lr_share: float | None = None

    @property
    def aligns(self) -> bool:
        """Whether the stage optimises a preference or reward signal against the model's own distribution."""
        return self.family in ("preference", "reinforcement")


@dataclass(frozen=True)
class MethodSpec:
    """One tuning method.

    Attributes:
        name: The value of ``method.name``.
        summary: One line for ``--help``, the schema and the web UI.
        family: Which parameters it trains (see :data:`MethodFamily`).
        impl: ``"module:Class"`` of its :class:`~tuneforge.models.tuning.TuningMethod` subclass.
        quantised: Whether the frozen base is loaded quantised (bitsandbytes).
        lr_factor: The advised learning rate as a multiple of its family's rate for the model size (adapters
            2e-4 below 1B parameters, whole weights 1e-4; docs/advice.md, "Learning rate").
        lr_reason: Why the factor, for the advice line.
        merge_blocker: Why the trained result cannot be folded into the base weights (``export`` then
            saves the adapter beside its base); empty where it merges.
        stages: The stages it can train (None: every stage), and ``stage_reason`` why only those.
        packs: Whether padding-free rows work on GPU (varlen kernels); False where the method adds
            positions to every sequence (virtual tokens), so GPU batches are padded (CPU runs each
            sequence of a row alone either way).
    """

    name: str
    summary: str
    family: MethodFamily
    impl: str
    quantised: bool = False
    lr_factor: float = 1.0
    lr_reason: str = ""
    merge_blocker: str = ""
    stages: tuple[str, ...] | None = None
    stage_reason: str = ""
    packs: bool = True

    @property
    def adapter(self) -> bool:
        """Whether the result is an adapter saved apart from the base."""
        return self.family in ("lora", "adapter")

    @property
    def merges(self) -> bool:
        """Whether ``export`` folds the result into the base weights."""
        return not self.merge_blocker

    @property
    def uses_lora(self) -> bool:
        """Whether ``method.lora`` configures it (and the LoRA advice applies)."""
        return self.family == "lora"


_STAGES = "tuneforge.training.stages"
_METHODS = "tuneforge.models.tuning.methods"
_PEFT = "tuneforge.models.tuning.peft_methods"

#: Prompt-learning methods (virtual tokens): what they share.
_VIRTUAL_MERGE = ("its virtual tokens are extra inputs, not a change of any weight, so there is nothing to fold "
                  "into the base")
_LM_STAGES = ("sft", "pt")
_VIRTUAL_STAGES = ("the virtual tokens shift every position of the sequence, which the preference, reward and "
                   "reinforcement trainers (TRL) do not account for")
_VIRTUAL_LR = "only a few virtual-token embeddings train, from far away: {rate} below 1B (PEFT's examples)"

#: Every training stage, in the order menus show them (the default first).
STAGE_TABLE: tuple[StageSpec, ...] = (
    StageSpec("sft", "supervised fine-tuning on prompt/answer conversations", "language", frozenset({"sft"}),
              f"{_STAGES}.base:Stage", checks=("sft",)),
    StageSpec("pt", "continued pre-training on plain text", "language", frozenset({"pt"}),
              f"{_STAGES}.base:PretrainStage", checks=("pt",)),
    StageSpec("rm", "a reward model that scores chosen above rejected", "reward", frozenset({"pairwise"}),
              f"{_STAGES}.reward:RewardStage", evaluation="reward_model"),
    StageSpec("dpo", "direct preference optimisation against a reference", "preference", frozenset({"pairwise"}),
              f"{_STAGES}.preference:DpoStage", checks=("pairwise",), evaluation="pairwise", lr_share=0.3),
    StageSpec("simpo", "reference-free preference optimisation with a length-normalised margin", "preference",
              frozenset({"pairwise"}), f"{_STAGES}.preference:SimpoStage", evaluation="pairwise", lr_share=0.3),
    StageSpec("orpo", "SFT plus an odds-ratio preference term, no reference", "preference",
              frozenset({"pairwise"}), f"{_STAGES}.preference:OrpoStage", evaluation="pairwise", lr_share=0.3),
    StageSpec("kto", "preference from answers labelled desirable or undesirable", "preference",
              frozenset({"unpaired", "pairwise"}), f"{_STAGES}.kto:KtoStage", checks=("unpaired",),
              evaluation="unpaired", lr_share=0.3),
    StageSpec("ppo", "PPO against a reward model or reward functions", "reinforcement", frozenset({"sft"}),
              f"{_STAGES}.ppo:PpoStage", evaluation="sampled_reward", lr_share=1.0),
    StageSpec("grpo", "group-relative policy optimisation with reward functions", "reinforcement",
              frozenset({"sft"}), f"{_STAGES}.grpo:GrpoStage", evaluation="sampled_reward", lr_share=1.0),
    StageSpec("seq_cls", "sequence classification: one of N labels per text (a classification head)",
              "classification", frozenset({"cls"}), f"{_STAGES}.classify:SeqClsStage", checks=("cls",),
              evaluation="classification"),
    StageSpec("token_cls", "token classification: one tag per word (NER, BIO tags)", "classification",
              frozenset({"tagging"}), f"{_STAGES}.classify:TokenClsStage", checks=("tagging",),
              evaluation="classification"),
)

#: Every tuning method, in the order menus show them (the default first).
METHOD_TABLE: tuple[MethodSpec, ...] = (
    MethodSpec("lora", "low-rank adapters on the chosen linear layers", "lora", f"{_METHODS}:Lora"),
    MethodSpec("qlora", "LoRA on a 4- or 8-bit quantised base (bitsandbytes)", "lora", f"{_METHODS}:QLora",
               quantised=True),
    MethodSpec("dora", "weight-decomposed LoRA (magnitude and direction)", "lora", f"{_METHODS}:Dora"),
    MethodSpec("adalora", "LoRA whose rank budget is reallocated by importance during training", "lora",
               f"{_PEFT}:AdaLora"),
    MethodSpec("ia3", "learned vectors rescaling keys, values and the feed-forward input", "adapter",
               f"{_PEFT}:Ia3", lr_factor=15.0, lr_reason="IA3 trains a few scaling vectors: 15 x the LoRA rate "
               "(3e-3 below 1B, the T-Few paper's rate)"),
    MethodSpec("ln_tuning", "train copies of the normalisation layers only", "adapter", f"{_PEFT}:LnTuning",
               lr_factor=5.0, lr_reason="LN tuning trains only the norm scales: 5 x the LoRA rate"),
    MethodSpec("prompt", "prompt tuning: trained virtual-token embeddings in front of the input", "adapter",
               f"{_PEFT}:PromptTuning", lr_factor=150.0, lr_reason=_VIRTUAL_LR.format(rate="3e-2"),
               merge_blocker=_VIRTUAL_MERGE, stages=_LM_STAGES, stage_reason=_VIRTUAL_STAGES, packs=False),
    MethodSpec("ptuning", "P-tuning: virtual tokens produced by a trained prompt encoder (MLP or LSTM)", "adapter",
               f"{_PEFT}:PTuning", lr_factor=5.0, lr_reason="P-tuning's encoder is a small MLP: 5 x the LoRA rate "
               "(1e-3 below 1B)", merge_blocker=_VIRTUAL_MERGE, stages=_LM_STAGES, stage_reason=_VIRTUAL_STAGES,
               packs=False),
    MethodSpec("prefix", "prefix tuning: trained keys and values in front of every layer's attention", "adapter",
               f"{_PEFT}:PrefixTuning", lr_factor=50.0, lr_reason=_VIRTUAL_LR.format(rate="1e-2"),
               merge_blocker=_VIRTUAL_MERGE, stages=_LM_STAGES, stage_reason=_VIRTUAL_STAGES, packs=False),
    MethodSpec("adapter", "bottleneck adapters after attention and MLP: h + up(act(down(h)))", "adapter",
               f"{_PEFT}:Bottleneck", lr_factor=5.0,
               lr_reason="bottleneck adapters start as the identity and train small dense blocks: 5 x the LoRA rate "
               "(1e-3 below 1B, as Houlsby et al.)",
               merge_blocker="the non-linearity between the down- and up-projection is not a linear map, so no "
                             "weight matrix of the base can absorb the adapter"),
    MethodSpec("freeze", "train the last N transformer layers (optionally unfreezing more as training goes)",
               "partial", f"{_METHODS}:Freeze"),
    MethodSpec("bitfit", "train only the bias terms", "partial", f"{_METHODS}:BitFit", lr_factor=10.0,
               lr_reason="BitFit trains only biases: 10 x the full fine-tuning rate (1e-3 below 1B, as in the "
               "BitFit paper's range 1e-4..1e-3)"),
    MethodSpec("full", "train every parameter", "full", f"{_METHODS}:TuningMethod"),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE)
METHOD_NAMES: tuple[str, ...] = tuple(m.name for m in METHOD_TABLE)
_STAGE_BY_NAME = {s.name: s for s in STAGE_TABLE}
_METHOD_BY_NAME = {m.name: m for m in METHOD_TABLE}


def stage_spec(name: str) -> StageSpec:
    """The row of stage ``name`` (the schema has already rejected unknown names)."""
    return _STAGE_BY_NAME[name]


def method_spec(name: str) -> MethodSpec:
    """The row of method ``name`` (the schema has already rejected unknown names)."""
    return _METHOD_BY_NAME[name]


def stage_kinds() -> dict[str, frozenset[str]]:
    """Stage name -> the example kinds it trains on."""
    return {s.name: s.kinds for s in STAGE_TABLE}


def default_stage_of_kind() -> dict[str, str]:
    """Example kind -> the stage ``tuneforge data check`` checks such a file against by default."""
    return {kind: s.name for s in STAGE_TABLE for kind in s.checks}


def alignment_stages() -> tuple[str, ...]:
    """Names of the preference and reinforcement stages."""
    return tuple(s.name for s in STAGE_TABLE if s.aligns)


def lora_methods() -> tuple[str, ...]:
    """Names of the methods configured by ``method.lora``."""
    return tuple(m.name for m in METHOD_TABLE if m.uses_lora)


def names_text(names: tuple[str, ...]) -> str:
    """``"a, b or c"`` for descriptions and messages."""
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def load_impl(impl: str) -> Any:
    """Import ``"module:Class"`` and return an instance of the class."""
    module, _, attr = impl.partition(":")
    return getattr(importlib.import_module(module), attr)()
