"""The one Trainer subclass: sparse-logit loss, atomic checkpoints, LoRA+ and token counting.

Everything else (optimizer, schedule, accumulation, resume, evaluation) is transformers' ``Trainer``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import DistributedType
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints

from tuneforge.utils.errors import Problem, TuneforgeError

IGNORE = -100
#: A checkpoint's copy of a reparameterised prompt encoder (P-tuning, projected prefix tuning).
PROMPT_ENCODER_FILE = "prompt_encoder.safetensors"
#: Free disk space required before a checkpoint, as a multiple of its estimated size.
DISK_MARGIN = 1.2


class RunTrainerMixin:
    """What every tuneforge trainer adds to its transformers/TRL base: crash-safe checkpoints and token counts.

    Mixed in before the base class (``class DPO(RunTrainerMixin, DPOTrainer)``), so TRL trainers get the
    same checkpoints, resume and tokens/s logging as SFT.
    """

    #: Input tokens (no padding) this process trained on; read by the progress callback.
    tokens_seen = 0
    #: The same summed over every process, refreshed at each training log (read by the JSONL log).
    tokens_total = 0
    #: The tuning method's extra loss term (AdaLoRA's orthogonality penalty): model -> tensor or None.
    regularizer: Any = None

    def __init__(self, *args: Any, loraplus_lr_ratio: float | None = None, **kwargs: Any) -> None:
        """``loraplus_lr_ratio``: LoRA+, the learning-rate ratio of the LoRA B matrices (None: plain AdamW)."""
        self.loraplus_lr_ratio = loraplus_lr_ratio  # set first: base constructors may build the optimizer
        super().__init__(*args, **kwargs)
        self._keep_trainable_dtype()

    def create_optimizer(self, model: Any = None) -> Any:
        """AdamW, or LoRA+ (B matrices at ``loraplus_lr_ratio`` x the learning rate) when asked.

        In the mixin so every stage (SFT and the TRL-based ones) honours ``method.lora.loraplus_lr_ratio``.
        """
        if self.loraplus_lr_ratio is None or self.optimizer is not None:
            return super().create_optimizer(model) if model is not None else super().create_optimizer()
        from peft.optimizers import create_loraplus_optimizer

        self.optimizer = create_loraplus_optimizer(
            self.model, torch.optim.AdamW, lr=self.args.learning_rate, loraplus_lr_ratio=self.loraplus_lr_ratio,
            weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_accelerator_and_postprocess(self) -> None:
        """transformers' accelerator, with FSDP also selected on CPU processes (docs/distributed.md).

        accelerate turns its FSDP plugin on only for accelerator devices (its ``MULTI_GPU``-like types); on
        CPU it silently falls back to DDP. torch's ``fully_shard`` runs on CPU over gloo, so on CPU the
        same plugin transformers built is selected here; wrapping, sharded checkpoints and the gathered
        final save are still accelerate's and torch's.
        """
        super().create_accelerator_and_postprocess()
        state = self.accelerator.state
        if self.args.fsdp_plugin_args is None or self.is_fsdp_enabled or state.distributed_type != DistributedType.MULTI_CPU:
            return
        from accelerate.state import PartialState
        from accelerate.utils import FullyShardedDataParallelPlugin

        state.fsdp_plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
        state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.is_fsdp_enabled = True

    def _keep_trainable_dtype(self) -> None:
        """Undo TRL's cast of trainable QLoRA parameters to bf16 where the model computes in another dtype.

        TRL's trainers cast every trainable parameter of a quantized model to bf16, new heads included (a
        reward model's ``score`` then fails against fp32 hidden states), and bf16 is slow on CPUs without
        bf16 instructions. The parameters follow the embeddings' dtype, the model's compute dtype.
        """
        model = self.model
        if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
            return
        dtype = model.get_input_embeddings().weight.dtype
        for p in model.parameters():
            if p.requires_grad and p.dtype != dtype and p.dtype.is_floating_point:
                p.data = p.data.to(dtype)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Before a training log line, sum the token counts of every process (all ranks log together)."""
        if "loss" in logs:
            count = torch.tensor(float(self.tokens_seen), device=self.args.device)
            self.tokens_total = int(self.accelerator.reduce(count, "sum").item()) if self.args.world_size > 1 \
                else self.tokens_seen
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """Count the step's real tokens, then train as the base class does."""
        if isinstance(inputs, Mapping):  # a collator may return a BatchEncoding (a UserDict)
            self._count_tokens(inputs)
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        return self._regularized(model, loss)

    def _regularized(self, model: Any, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the method's extra term, backwarded with a weight that counts it once per optimizer
        step; ``loss`` itself (no new tensor, no copy) for the methods without one."""
        term = self.regularizer(self.accelerator.unwrap_model(model)) if self.regularizer else None
        if term is None:
            return loss
        term = term / self.args.gradient_accumulation_steps
        self.accelerator.backward(term)
        return loss + term.detach().to(loss.device)

    def _count_tokens(self, inputs: dict[str, Any]) -> None:
        """Real tokens of a batch: its attention masks (CPO/ORPO keep one per side), else the ids."""
        masks = [v for k, v in inputs.items() if k.endswith("attention_mask") and not k.startswith("prompt")
                 and torch.is_tensor(v)]
        if masks:
            self.tokens_seen += sum(int(m.sum()) for m in masks)
        elif torch.is_tensor(inputs.get("input_ids")):
            self.tokens_seen += inputs["input_ids"].numel()

    # --- crash-safe checkpoints -------------------------------------------------------------------
    # Trainer writes checkpoint-N in place; a kill in the middle leaves a folder that looks complete
    # to get_last_checkpoint. We let it write into a staging folder and rename it when complete.
    # In a distributed run every rank writes its part (its RNG state; FSDP/ZeRO shards) into the same
    # staging folder; rank 0 renames it once all have finished, so a checkpoint is complete or absent.
    # (Overrides the private _save_checkpoint/_get_output_dir of transformers 5.x; the kill-and-resume
    # test in tests/e2e fails if upstream changes them.)

    _staging: str | None = None

    def _get_output_dir(self, trial: Any) -> str:
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = super()._get_output_dir(trial)
        self._check_disk(run_dir)
        name = f"checkpoint-{self.state.global_step}"
        staging = os.path.join(run_dir, f".staging-{name}")
        if self.args.process_index == 0:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()  # every rank's part is on disk
        if self.args.process_index == 0:
            self._save_prompt_encoder(os.path.join(staging, name))
            self._publish(os.path.join(staging, name), os.path.join(run_dir, name))
        self._point_best_at(run_dir, os.path.join(run_dir, name))
        self.accelerator.wait_for_everyone()  # no rank goes on before the checkpoint is in place

    def _save_prompt_encoder(self, folder: str) -> None:
        """The whole prompt encoder of P-tuning / projected prefix tuning, beside peft's adapter file.

        peft saves a prompt-learning adapter as the virtual tokens the encoder *produces*; the encoder's own
        weights (an MLP or LSTM over a small embedding), which the optimizer state in the checkpoint belongs
        to, are not in it. A resumed run loads them from here (:meth:`_load_from_checkpoint`).
        """
        encoders = getattr(self.accelerator.unwrap_model(self.model), "prompt_encoder", None)
        if encoders is None or not any(len(list(e.children())) > 1 for e in encoders.values()):
            return
        from safetensors.torch import save_file

        state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, e in encoders.items()
                 for k, v in e.state_dict().items()}
        save_file(state, os.path.join(folder, PROMPT_ENCODER_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """transformers' resume, or for a reparameterised prompt encoder its whole saved state (see above)."""
        path = os.path.join(resume_from_checkpoint, PROMPT_ENCODER_FILE)
        if not os.path.isfile(path):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
            return
        from safetensors.torch import load_file

        encoders = self.accelerator.unwrap_model(self.model).prompt_encoder
        state = load_file(path)
        for name, encoder in encoders.items():
            encoder.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")})

    def _point_best_at(self, run_dir: str, final: str) -> None:
        """The best checkpoint's published path (the parent recorded the staging path, or none at all)."""
        if not self.state.best_global_step:
            return
        best = os.path.join(run_dir, f"checkpoint-{self.state.best_global_step}")
        if os.path.isdir(best) and self.state.best_model_checkpoint != best:
            self.state.best_model_checkpoint = best
            if self.args.should_save:  # the copy inside the checkpoint is what a resumed run reads
                self.state.save_to_json(os.path.join(final, "trainer_state.json"))

    def _publish(self, staged: str, final: str) -> None:
        """Rename a complete staged checkpoint into place, then keep only the newest ``save_total_limit``."""
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(staged, final)
        shutil.rmtree(os.path.dirname(staged), ignore_errors=True)
        rotate_checkpoints(output_dir=os.path.dirname(final), save_total_limit=self.args.save_total_limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)

    def _check_disk(self, run_dir: str) -> None:
        """Refuse to start a checkpoint that cannot fit (trainable weights, 2 Adam moments, model weights)."""
        os.makedirs(run_dir, exist_ok=True)
        params = sum(p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)
        need = int(params * 3 * DISK_MARGIN) + 50 * 2**20
        free = shutil.disk_usage(run_dir).free
        if free < need:
            raise DiskSpaceError("not enough disk space for a checkpoint", [Problem(
                f"a checkpoint needs about {need / 2**20:.0f} MiB but {run_dir} has {free / 2**20:.0f} MiB free",
                field="output.dir", fix="free some space or set output.dir elsewhere; the last checkpoint is kept")])




class TuneforgeTrainer(RunTrainerMixin, Trainer):
    """``Trainer`` with the loss computed only where labels exist and crash-safe checkpoints.

    Args:
        *args, **kwargs: As for ``transformers.Trainer``, plus ``loraplus_lr_ratio`` (see the mixin).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_seen = 0  # input tokens (no padding) processed in training steps
        # compute_loss divides by the label count of the whole accumulated step; make Trainer count it
        # and not divide again.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True

    #: Run the sequences of a padding-free row as separate causal inputs (see _pieces); set for CPU.
    split_packed = False
    #: Padded tokens per forward/backward when a row is split (see _pieces): 1 runs one sequence at a time.
    piece_tokens = 1
    #: Output positions the model puts before the input's own (prompt and P-tuning's virtual tokens).
    logit_offset = 0

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Cross-entropy over labelled positions only: the vocabulary projection skips masked tokens.

        ``logits_to_keep`` as a boolean (batch, length) mask makes the model apply ``lm_head`` to the
        positions whose next token is a label, so prompt tokens cost no full-vocabulary logits.
        """
        labels = inputs.pop("labels")
        pieces = self._pieces(inputs, labels) if self.split_packed else [(inputs, labels)]
        total, count, outputs = None, 0, None
        for piece, piece_labels in pieces:
            loss_sum, n, outputs = self._sparse_loss(model, piece, piece_labels)
            total = loss_sum if total is None else total + loss_sum
            count += n
        denom = num_items_in_batch if num_items_in_batch is not None else max(1, count)
        loss = total / (denom.to(total.device) if torch.is_tensor(denom) else denom)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts the labels of every rank; DDP/FSDP then average the ranks' gradients.
            # Scaling by the process count makes the step's gradient that of (sum of all token losses) /
            # (all labels): the loss of one process with the whole global batch (as Trainer.compute_loss does).
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """One micro-batch; a split padding-free row runs forward *and backward* one sequence at a time.

        Backward per sequence frees each sequence's activations before the next forward, so peak memory is
        that of the longest sequence, not of the whole row (about 1.4 MB per token for a 135M model). The
        gradients are the same sums as one backward over the row, because every piece is divided by the
        same label count of the accumulated step.
        """
        if not self.split_packed or self.accelerator.distributed_type != DistributedType.NO:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        if callable(getattr(self.optimizer, "train", None)):  # schedule-free optimizers, as Trainer does
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        labels = inputs.pop("labels")
        self._count_tokens(inputs)
        pieces = self._pieces(inputs, labels)
        denom = num_items_in_batch if num_items_in_batch is not None else max(
            1, sum(int((lab[:, 1:] != IGNORE).sum()) for _, lab in pieces))
        total = torch.zeros((), device=labels.device)
        for piece, piece_labels in pieces:
            with self.compute_loss_context_manager():
                loss_sum, _, _ = self._sparse_loss(model, piece, piece_labels)
            loss = loss_sum / (denom.to(loss_sum.device) if torch.is_tensor(denom) else denom)
            self.accelerator.backward(loss)
            total += loss.detach()
        return self._regularized(model, total)

    def _sparse_loss(self, model: Any, inputs: dict[str, Any], labels: torch.Tensor) -> tuple[torch.Tensor, int, Any]:
        # the model's output may start with positions of its own (prompt tuning's virtual tokens): never kept
        keep = labels.new_zeros((labels.shape[0], self.logit_offset + labels.shape[1]), dtype=torch.bool)
        keep[:, self.logit_offset:-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][keep[:, self.logit_offset:-1]]
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
        return F.cross_entropy(logits.float(), targets, reduction="sum"), targets.numel(), outputs

    def _pieces(self, inputs: dict[str, Any], labels: torch.Tensor) -> list[tuple[dict[str, Any], torch.Tensor]]:
        """The sequences of a padding-free row as right-padded batches that plain causal attention runs exactly.

        On CPU, PyTorch's SDPA has an O(n) flash kernel only for plain causal attention; a packed row needs a
        block-diagonal mask, which falls back to the math kernel: n^2 attention over the whole row, and the
        probabilities of every layer kept for backward (gigabytes for a 2k-token row). So the row is cut into
        its sequences, and consecutive sequences are stacked into right-padded batches of at most
        :attr:`piece_tokens` padded tokens, with no attention mask: under causal attention a real token never
        sees the padding after it, and every row starts at position 0, so each sequence's logits are those it
        has alone, while the linear layers multiply several sequences at once (docs/performance.md).
        """
        pos = inputs.get("position_ids")
        if pos is None or inputs["input_ids"].shape[0] != 1 or "attention_mask" in inputs:
            return [(inputs, labels)]
        starts = (pos[0] == 0).nonzero().flatten().tolist() + [pos.shape[1]]
        groups: list[list[tuple[int, int]]] = []
        for a, b in pairwise(starts):
            if b <= a:
                continue
            group = groups[-1] if groups else []
            width = max([b - a] + [y - x for x, y in group])
            if group and (len(group) + 1) * width <= self.piece_tokens:
                group.append((a, b))
            else:
                groups.append([(a, b)])
        return [self._padded(inputs["input_ids"], labels, group) for group in groups]

    @staticmethod
    def _padded(ids: torch.Tensor, labels: torch.Tensor,
                spans: list[tuple[int, int]]) -> tuple[dict[str, Any], torch.Tensor]:
        """Sequences ``spans`` of a row as one right-padded batch (padding: token id 0, labels ignored)."""
        if len(spans) == 1:  # the default: one sequence, a view of the row (no copy, no padding)
            (a, b), = spans
            return {"input_ids": ids[:, a:b]}, labels[:, a:b]
        width = max(b - a for a, b in spans)
        batch = ids.new_zeros((len(spans), width))
        batch_labels = labels.new_full((len(spans), width), IGNORE)
        for row, (a, b) in enumerate(spans):
            batch[row, : b - a] = ids[0, a:b]
            batch_labels[row, : b - a] = labels[0, a:b]
        return {"input_ids": batch}, batch_labels

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length-grouped batches whose order depends only on (seed, epoch), so a resumed run sees the same order.

        transformers' own ``LengthGroupedSampler`` draws from the global RNG, whose state at the start of an
        epoch differs after a resume; this one is reseeded per epoch through ``set_epoch``.
        """
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or "length" not in dataset.column_names:
            return super()._get_train_sampler(train_dataset)
        # grouped by the global batch: accelerate deals consecutive batches to the ranks, so every process
        # count sees the same examples in the same optimizer step
        batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return EpochLengthGroupedSampler(list(dataset["length"]), batch, self.args.data_seed or self.args.seed)

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, Any, Any]:
        """Evaluation loss with the same sparse computation (mean over the batch's labels)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, dict(inputs))
        return loss.detach(), None, None


class DiskSpaceError(TuneforgeError):
    """Raised before writing a checkpoint that would not fit."""


class EpochLengthGroupedSampler(torch.utils.data.Sampler):
    """Indices grouped into similar-length batches, shuffled by a generator seeded with seed + epoch."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate at the start of every epoch (also when resuming)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))
