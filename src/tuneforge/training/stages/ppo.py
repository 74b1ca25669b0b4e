"""PPO with a trained reward model: our own small stage, because TRL 1.16 no longer ships a PPO trainer.

Each training step is one PPO minibatch update on the shared ``Trainer`` loop:

1. *Rollout* (once per batch of prompts): the policy samples answers; the reward model scores
   prompt + answer; the reference (the base with adapters disabled for LoRA, a frozen copy for full
   fine-tuning) gives log-probabilities for the per-token KL penalty; a value head on the policy's last
   hidden state estimates returns; GAE gives advantages (whitened).
2. *Update*, ``alignment.ppo_epochs`` times on the same rollout (the sampler repeats each batch that
   often): clipped policy-ratio loss + ``value_coef`` x clipped value loss.

The value head is a linear layer kept by the trainer (saved in checkpoints, not in the final model).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from tuneforge.config.schema import AlignmentConfig, RunConfig
from tuneforge.models.reward import RewardScorer
from tuneforge.training.stages.base import StageInputs, TrlStage
from tuneforge.training.stages.grpo import GrpoStage
from tuneforge.training.trainer import RunTrainerMixin
from tuneforge.utils.errors import ConfigError, Problem

VALUE_HEAD = "value_head.pt"
GAMMA, LAM = 1.0, 0.95


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over answer tokens (gamma 1, lambda 0.95).

    ``values`` must be 0 where ``mask`` is 0, so the value after an answer's last token is 0.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + GAMMA * next_value - values[:, t]
        running = (delta + GAMMA * LAM * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, advantages + values


class PPOTrainer(RunTrainerMixin, Trainer):
    """PPO on the Trainer loop (see the module docstring)."""

    def __init__(self, *args: Any, scorer: RewardScorer, alignment: AlignmentConfig, reference: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scorer, self.a, self.reference = scorer, alignment, reference
        hidden = self.model.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden, 1).to(self.args.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self._rollouts: dict[tuple[int, ...], list[Any]] = {}  # prompt ids -> [rollout, times used]
        self._stats: dict[str, list[float]] = {}
        self._grad_step = -1
        tok = self.processing_class
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    # --- data and optimizer ---------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        from trl.trainer.utils import RepeatSampler

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        return RepeatSampler(dataset, mini_repeat_count=1, batch_size=batch, repeat_count=self.a.ppo_epochs,
                             shuffle=True, seed=self.args.seed)

    def create_optimizer(self, model: Any = None) -> Any:
        """The policy's optimizer plus the value head (no weight decay)."""
        optimizer = super().create_optimizer()
        if not any(p is self.value_head.weight for g in optimizer.param_groups for p in g["params"]):
            optimizer.add_param_group({"params": list(self.value_head.parameters()), "weight_decay": 0.0})
        return optimizer

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        torch.save(self.value_head.state_dict(), os.path.join(output_dir, VALUE_HEAD))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and os.path.isfile(os.path.join(checkpoint, VALUE_HEAD)):
            self.value_head.load_state_dict(torch.load(os.path.join(checkpoint, VALUE_HEAD), weights_only=True))
        super()._load_optimizer_and_scheduler(checkpoint)

    # --- rollout ---------------------------------------------------------------------------------------

    def _forward(self, model: Any, seq: torch.Tensor, mask: torch.Tensor, n_prompt: int,
                 values: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities of the answer tokens (and value estimates at the positions that predict them)."""
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=seq, attention_mask=mask, position_ids=positions, use_cache=False,
                    output_hidden_states=values)
        logits = out.logits[:, n_prompt - 1:-1].float()
        logps = torch.gather(F.log_softmax(logits, -1), 2, seq[:, n_prompt:, None]).squeeze(-1)
        value = None
        if values:
            value = self.value_head(out.hidden_states[-1][:, n_prompt - 1:-1].float()).squeeze(-1)
        return logps, value

    def _reference_logps(self, model: Any, seq: torch.Tensor, mask: torch.Tensor, n_prompt: int) -> torch.Tensor:
        unwrapped = self.accelerator.unwrap_model(model)
        if self.reference is not None:
            return self._forward(self.reference, seq, mask, n_prompt)[0]
        with unwrapped.disable_adapter():
            return self._forward(model, seq, mask, n_prompt)[0]

    def _sample(self, model: Any, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Left-padded prompts + sampled answers, their attention mask, and the padded prompt width."""
        device = self.args.device
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        unwrapped = self.accelerator.unwrap_model(model)
        eot = self.processing_class.convert_tokens_to_ids(self.eot) if self.eot else None
        eos = [t for t in {self.processing_class.eos_token_id, eot} if t is not None]
        seq = unwrapped.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=self.a.temperature,
                                 top_k=0, top_p=1.0, max_new_tokens=self.a.max_new_tokens, eos_token_id=eos,
                                 pad_token_id=self.pad_id, use_cache=True)
        answer = seq[:, width:]
        ended = torch.zeros(answer.shape[0], dtype=torch.bool, device=device)
        keep = torch.ones_like(answer)
        for t in range(answer.shape[1]):  # keep up to and including the first end-of-turn token
            keep[:, t] = (~ended).long()
            ended |= torch.isin(answer[:, t], torch.tensor(eos, device=device))
        return seq, torch.cat([mask, keep], dim=1), width

    eot: str | None = None

    @torch.no_grad()
    def _rollout(self, model: Any, prompts: list[list[int]]) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        seq, mask, n_prompt = self._sample(model, prompts)
        answer_mask = mask[:, n_prompt:].float()
        old_logps, values = self._forward(model, seq, mask, n_prompt, values=True)
        ref_logps = self._reference_logps(model, seq, mask, n_prompt)
        texts = [list(s[m.bool()].tolist()) for s, m in zip(seq, mask, strict=True)]
        scores = torch.tensor(self.scorer.score_ids(texts, self.scorer.model.config.pad_token_id or 0,
                                                    next(self.scorer.model.parameters()).device),
                              device=seq.device)
        kl = (old_logps - ref_logps) * answer_mask
        rewards = -self.a.kl_coef * kl
        last = (answer_mask.sum(1).long() - 1).clamp(min=0)
        rewards[torch.arange(len(last)), last] += scores
        advantages, returns = gae(rewards, values * answer_mask, answer_mask)
        adv = advantages[answer_mask.bool()]
        advantages = (advantages - adv.mean()) / (adv.std() + 1e-8) * answer_mask
        model.train(was_training)
        self._record(reward=scores.mean().item(), reward_std=scores.std().item() if len(scores) > 1 else 0.0,
                     kl=kl.sum(1).mean().item(), answer_length=answer_mask.sum(1).mean().item())
        return {"seq": seq, "mask": mask, "n_prompt": n_prompt, "answer_mask": answer_mask, "old_logps": old_logps,
                "values": values, "advantages": advantages, "returns": returns}

    # --- update ----------------------------------------------------------------------------------------

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """One PPO minibatch update on the rollout of this batch's prompts (sampled on its first use)."""
        prompts = [list(map(int, p)) for p in inputs["prompt_ids"]]
        key = tuple(x for p in prompts for x in p)
        entry = self._rollouts.get(key)
        if entry is None:
            entry = self._rollouts[key] = [self._rollout(model, prompts), 0]
        entry[1] += 1
        if entry[1] >= self.a.ppo_epochs:
            del self._rollouts[key]
        r = entry[0]
        if self._grad_step != self.state.global_step:  # first micro-step of an optimizer step
            # Trainer zeroes only the model's gradients; the value head is ours to zero.
            self.value_head.zero_grad(set_to_none=True)
            self._grad_step = self.state.global_step
        self.tokens_seen += int(r["mask"].sum())
        model.train()
        with self.compute_loss_context_manager():
            loss = self._ppo_loss(model, r)
        self.accelerator.backward(loss / self.args.gradient_accumulation_steps)
        return loss.detach() / self.args.gradient_accumulation_steps

    def _ppo_loss(self, model: Any, r: dict[str, Any]) -> torch.Tensor:
        logps, values = self._forward(model, r["seq"], r["mask"], r["n_prompt"], values=True)
        m, adv, clip = r["answer_mask"], r["advantages"], self.a.clip_range
        ratio = torch.exp(logps - r["old_logps"])
        policy = masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)), m)
        clipped = r["values"] + (values - r["values"]).clamp(-clip, clip)
        value = 0.5 * masked_mean(torch.max((values - r["returns"]) ** 2, (clipped - r["returns"]) ** 2), m)
        self._record(clipfrac=masked_mean(((ratio - 1).abs() > clip).float(), m).item(), value_loss=value.item())
        return policy + self.a.value_coef * value

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        raise NotImplementedError("PPO trains through training_step; it has no evaluation loss")

    # --- logging ---------------------------------------------------------------------------------------

    def _record(self, **values: float) -> None:
        for k, v in values.items():
            self._stats.setdefault(k, []).append(v)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs.update({k: sum(v) / len(v) for k, v in self._stats.items() if v})
        self._stats = {}
        super().log(logs, start_time)


class PpoStage(TrlStage):
    """``ppo``: reward-model RLHF (the classic RLHF recipe: reward model first, then PPO against it)."""

    #: Our own rollout loop generates with the unwrapped policy: one process (device_map auto for big models).
    strategies = ("none",)

    name = "ppo"
    generates_in_memory = False  # the trained object wraps the policy with a value head
    metrics = ("reward", "kl", "value_loss")
    surrogate_loss = True
    prepare_data = GrpoStage.prepare_data

    def build(self, s: StageInputs) -> Any:
        from datasets import Dataset

        a = s.cfg.alignment
        if not a.reward_model:
            raise ConfigError("ppo needs a reward model", [Problem(
                "alignment.reward_model is not set", field="alignment.reward_model",
                fix="train one with stage: rm and set alignment.reward_model: runs/<that run>")])
        scorer = RewardScorer.load(a.reward_model)
        _same_vocabulary(scorer.tokenizer, s.tokenizer, a.reward_model)
        reference = None if s.adapter else _frozen_copy(s.model)
        args = {**s.args, "eval_strategy": "no", "metric_for_best_model": None, "greater_is_better": None,
                "train_sampling_strategy": "random"}
        trainer = PPOTrainer(model=s.model, args=TrainingArguments(**args),
                             train_dataset=Dataset.from_dict({"prompt_ids": s.train["prompt_ids"]}),
                             data_collator=lambda rows: {"prompt_ids": [r["prompt_ids"] for r in rows]},
                             processing_class=s.tokenizer, callbacks=s.callbacks, scorer=scorer, alignment=a,
                             reference=reference, **self.trainer_kwargs(s))
        return trainer

    def configure(self, trainer: Any, cpu: bool, cfg: RunConfig) -> None:
        from tuneforge.data.templates import resolve_template

        trainer.eot = resolve_template(cfg.template.name, trainer.processing_class, cfg.template.system).eot


def _frozen_copy(model: Any) -> Any:
    """The reference for full fine-tuning: a frozen copy of the starting weights."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _same_vocabulary(rm_tokenizer: Any, tokenizer: Any, where: str) -> None:
    if rm_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError("reward model and policy tokenize differently", [Problem(
            f"the reward model at {where} has another vocabulary than the policy", field="alignment.reward_model",
            fix="train the reward model from the same base model family as the policy")])


