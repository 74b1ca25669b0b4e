"""Load a model with its chat template and generate, streaming or not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tuneforge.data.records import Message
from tuneforge.data.templates import ChatTemplate, resolve_template
from tuneforge.data.tokenize import encode_texts
from tuneforge.utils.errors import ModelError, Problem

#: Prompts answered at once by :meth:`Engine.generate_batch`. On the 2-core CPU, 20 at a time answered the
#: forgetting guard's 60 probes in half the time of 8 at a time (24 s against 49 s for the default model),
#: with identical greedy answers.
GENERATION_BATCH = 20


@dataclass
class GenerationOptions:
    """Sampling options; ``temperature`` 0 means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate``."""
        sample = self.temperature > 0
        out: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": sample,
                               "repetition_penalty": self.repetition_penalty}
        if sample:
            out.update(temperature=self.temperature, top_p=self.top_p)
        else:  # silence "temperature is set but do_sample=False" from generation configs that set them
            out.update(temperature=None, top_p=None, top_k=None)
        return out


class Engine:
    """A model, its tokenizer and the chat template it was trained with.

    Build one with :meth:`load` (a name, folder, .gguf, run folder or adapter folder) or directly from
    an in-memory model (training uses that to generate replay answers).
    """

    def __init__(self, model: Any, tokenizer: Any, template: ChatTemplate, adapter: str | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.adapter = adapter  # which adapter of a shared peft model this engine decodes with
        self.stop_ids = self._stop_ids()

    @classmethod
    def load(cls, model: str, template: str = "auto", system: str | None = None,
             device_map: str | None = None) -> Engine:
        """Load for inference.

        Args:
            model: 'default', a model folder, a .gguf file, a hub id, a tuneforge run folder or an adapter folder.
            template: 'auto' (the tokenizer's own, which training saves into the model) or a registered name.
            system: Default system prompt; None uses the one the model was trained with (if it was).
            device_map: 'auto' spreads the model over every GPU (models larger than one GPU).
        """
        return cls.load_many([model], template, system, device_map)[0]

    @classmethod
    def load_many(cls, models: list[str], template: str = "auto", system: str | None = None,
                  device_map: str | None = None) -> list[Engine]:
        """Engines for several models, adapters of one base sharing a single copy of its weights.

        Each engine keeps its own tokenizer, chat template and system prompt (``system``, else the one
        its model was trained with).
        """
        from tuneforge.models.classifier import classifier_meta
        from tuneforge.models.loading import load_shared_for_inference, trained_system

        for name in models:  # a classifier's body would load as a language model without its head
            if classifier_meta(name) is not None:
                raise ModelError("a classifier does not generate text", [Problem(
                    f"{name} was trained with stage {classifier_meta(name)['stage']} (labels, not answers)",  # type: ignore[index]
                    field="model", fix="use `tuneforge chat RUN` (prints the label) or `tuneforge eval RUN`")])
        engines = []
        for name, (model, tokenizer, adapter) in zip(models, load_shared_for_inference(models, device_map=device_map),
                                                         strict=True):
            model.eval()
            prompt = system if system is not None else trained_system(name)
            engines.append(cls(model, tokenizer, resolve_template(template, tokenizer, prompt), adapter))
        return engines

    def _adapter_kwargs(self, rows: int) -> dict[str, Any]:
        """``adapter_names`` for peft when this engine is one adapter of a shared model."""
        return {"adapter_names": [self.adapter] * rows} if self.adapter else {}

    def _stop_ids(self) -> list[int]:
        """The model's eos ids plus the template's end-of-turn token."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.template.eot:
            eot = self.tokenizer.convert_tokens_to_ids(self.template.eot)
            if isinstance(eot, int) and eot != self.tokenizer.unk_token_id:
                ids.add(eot)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    @property
    def pad_id(self) -> int:
        """The tokenizer's pad id, else the first stop id (padding is masked, any id will do)."""
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]

    def left_pad(self, ids: list[list[int]]) -> tuple[Any, Any]:
        """Prompts as one left-padded batch: ``input_ids`` and ``attention_mask`` on the model's device."""
        import torch

        width = max(map(len, ids))
        input_ids = torch.tensor([[self.pad_id] * (width - len(i)) + i for i in ids], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=self.model.device)
        return input_ids, mask

    def prompt_ids(self, messages: list[Message], system: str = "", tools: str = "") -> list[int]:
        """Token ids of the rendered prompt (with ``tools``, a JSON list of definitions), tokenized as in training."""
        return encode_texts(self.tokenizer, [self.template.prompt(messages, system, tools)])[0]

    def stream(self, messages: list[Message], options: GenerationOptions | None = None,
               system: str = "") -> Iterator[str]:
        """Yield the answer piece by piece as it is generated.

        Closing the iterator early (a chat window closed, a client gone) stops the generation at the
        next token and waits for it, so no generation thread outlives its consumer.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        options = options or GenerationOptions()
        ids = torch.tensor([self.prompt_ids(messages, system)], device=self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class _Abandoned(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                      eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id, **options.kwargs(),
                      stopping_criteria=StoppingCriteriaList([_Abandoned()]), **self._adapter_kwargs(1))
        thread = threading.Thread(target=self._generate, kwargs=kwargs, daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            stop.set()
            thread.join()

    def _generate(self, **kwargs: Any) -> None:
        import torch

        with torch.inference_mode():
            self.model.generate(**kwargs)

    def chat(self, messages: list[Message], options: GenerationOptions | None = None, system: str = "") -> str:
        """The whole answer at once."""
        return "".join(self.stream(messages, options, system))

    def generate_batch(self, prompts: list[list[Message]], options: GenerationOptions | None = None,
                       system: str = "", batch_size: int = GENERATION_BATCH) -> list[str]:
        """Answers to many prompts (left-padded batches; greedy by default)."""
        import torch

        options = options or GenerationOptions(temperature=0.0, repetition_penalty=1.0)
        answers: list[str] = []
        for start in range(0, len(prompts), batch_size):
            input_ids, mask = self.left_pad([self.prompt_ids(p, system) for p in prompts[start:start + batch_size]])
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, eos_token_id=self.stop_ids,
                                          pad_token_id=self.pad_id, **options.kwargs(),
                                          **self._adapter_kwargs(len(input_ids)))
            answers += self.tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
        return [a.strip() for a in answers]
