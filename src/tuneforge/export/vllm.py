"""Will vLLM load an exported folder unchanged? The files and fields it reads, checked (docs/export.md, "vLLM").

vLLM reads ``config.json`` through transformers' AutoConfig (``architectures`` picks its implementation,
``dtype`` the ``--dtype auto`` precision, ``max_position_embeddings`` the longest ``--max-model-len``), the
weights from ``*.safetensors``, the tokenizer through AutoTokenizer (fast ``tokenizer.json``), the chat
template its OpenAI server applies from the tokenizer, and ``generation_config.json`` for default sampling
and the stop ids. Anything that needs ``trust_remote_code`` or a quantisation kernel is flagged. The check
reads files only: it does not import vLLM, which needs a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: vLLM's own implementations of the families tuneforge trains (vllm/model_executor/models/registry.py);
#: another architecture runs on vLLM's Transformers backend, which is slower and is reported as a warning.
VLLM_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM", "MixtralForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "Phi3ForCausalLM", "GlmForCausalLM", "Glm4ForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM",
    "BertForSequenceClassification", "BertForTokenClassification", "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification", "Qwen2ForRewardModel",
})
DTYPES = {"float16", "bfloat16", "float32"}
#: Stages whose result scores or labels (vLLM's pooling runner): no chat template or stop ids to check.
SCORERS = {"rm", "seq_cls", "token_cls"}


@dataclass(frozen=True)
class Check:
    """One thing vLLM reads: ``ok`` False is a failure unless ``warning``."""

    name: str
    ok: bool
    detail: str
    warning: bool = False


def vllm_checks(folder: str | Path, max_length: int | None = None) -> list[Check]:
    """Every check of ``folder`` (an ``export --format hf`` result), in the order vLLM reads the files.

    Args:
        folder: the exported folder.
        max_length: the run's training length; the context must hold it.
    """
    root = Path(folder)
    config = _json(root / "config.json")
    if config is None:
        return [Check("config.json", False, "missing: vLLM cannot identify the model")]
    if (root / "adapter_config.json").is_file():
        return [_adapter_check(root)]
    checks = [_architecture(config), _remote_code(root, config), _dtype(config), _context(config, max_length),
              _quantisation(config), _weights(root), *_tokenizer(root), _generation(root)]
    if (_json(root / "tuneforge_training.json") or {}).get("stage") in SCORERS:  # served by vLLM's pooling runner
        checks = [c for c in checks if c.name not in ("chat_template", "generation_config.json")]
    return checks


def vllm_ready(checks: list[Check]) -> bool:
    """True when no check failed (warnings allowed)."""
    return all(c.ok or c.warning for c in checks)


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _adapter_check(root: Path) -> Check:
    """vLLM serves LoRA adapters (``--enable-lora --lora-modules``) and no other PEFT type."""
    peft_type = (_json(root / "adapter_config.json") or {}).get("peft_type")
    if peft_type == "LORA":
        return Check("adapter", True, "a LoRA adapter: serve it with --enable-lora --lora-modules NAME=DIR on its "
                                      "base, or export a merged folder", warning=True)
    return Check("adapter", False, f"a {peft_type} adapter: vLLM serves LoRA adapters only; this method cannot be "
                                   "merged either, so serve it with `tuneforge serve`")


def _architecture(config: dict[str, Any]) -> Check:
    archs = config.get("architectures") or []
    if len(archs) != 1:
        return Check("architectures", False, f"config.json architectures is {archs!r}: vLLM needs exactly one")
    if archs[0] in VLLM_ARCHITECTURES:
        return Check("architectures", True, f"{archs[0]} has a vLLM implementation")
    return Check("architectures", False, f"{archs[0]} has no vLLM implementation: it would run on vLLM's "
                                         "Transformers backend (model_impl=transformers)", warning=True)


def _remote_code(root: Path, config: dict[str, Any]) -> Check:
    tok_cfg = _json(root / "tokenizer_config.json") or {}
    remote = [k for k in ("auto_map",) if k in config or k in tok_cfg] + [p.name for p in root.glob("*.py")]
    if remote:
        return Check("trust_remote_code", False, f"{', '.join(remote)}: vLLM would need --trust-remote-code")
    return Check("trust_remote_code", True, "no custom code: loads without --trust-remote-code")


def _dtype(config: dict[str, Any]) -> Check:
    dtype = config.get("dtype") or config.get("torch_dtype")
    if dtype in DTYPES:
        return Check("dtype", True, f"{dtype}: what --dtype auto serves in (float32 is served as bfloat16/float16)")
    return Check("dtype", False, f"config.json dtype is {dtype!r}: --dtype auto cannot choose; pass --dtype")


def _context(config: dict[str, Any], max_length: int | None) -> Check:
    context = config.get("max_position_embeddings")
    if not isinstance(context, int):
        return Check("max_position_embeddings", False, "missing: vLLM cannot size --max-model-len")
    if max_length and context < max_length:
        return Check("max_position_embeddings", False, f"{context} is shorter than the training length {max_length}")
    return Check("max_position_embeddings", True, f"{context} tokens (the default --max-model-len)")


def _quantisation(config: dict[str, Any]) -> Check:
    quant = config.get("quantization_config")
    if quant:
        return Check("quantization_config", False, f"{quant.get('quant_method')}: vLLM needs a matching kernel; "
                                                   "export merged in full precision")
    return Check("quantization_config", True, "none: full-precision weights")


def _weights(root: Path) -> Check:
    index = _json(root / "model.safetensors.index.json")
    files = sorted(set(index["weight_map"].values())) if index else ["model.safetensors"]
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        return Check("weights", False, f"missing {', '.join(missing)}")
    return Check("weights", True, f"safetensors: {', '.join(files)}")


def _tokenizer(root: Path) -> list[Check]:
    """A fast tokenizer, its config, and the chat template the OpenAI server applies."""
    tok_cfg = _json(root / "tokenizer_config.json")
    fast = Check("tokenizer.json", (root / "tokenizer.json").is_file(),
                 "fast tokenizer present" if (root / "tokenizer.json").is_file() else "missing: vLLM needs a fast "
                 "tokenizer (tokenizer.json)")
    if tok_cfg is None:
        return [fast, Check("tokenizer_config.json", False, "missing")]
    template = tok_cfg.get("chat_template") or (root / "chat_template.jinja").is_file()
    chat = Check("chat_template", bool(template), "the training template, read by /v1/chat/completions" if template
                 else "no chat template: /v1/chat/completions would refuse; pass --chat-template")
    return [fast, Check("tokenizer_config.json", True, f"{tok_cfg.get('tokenizer_class', 'a tokenizer')}"), chat]


def _generation(root: Path) -> Check:
    """The stop ids: vLLM stops on generation_config's eos ids, which must hold the template's end of turn."""
    gen = _json(root / "generation_config.json")
    if gen is None:
        return Check("generation_config.json", False, "missing: vLLM would stop only on config.json's eos")
    eos = gen.get("eos_token_id")
    ids = eos if isinstance(eos, list) else [eos]
    meta = _json(root / "tuneforge_training.json") or {}
    tok = _json(root / "tokenizer.json") or {}
    eot = meta.get("eot")
    eot_id = next((t["id"] for t in tok.get("added_tokens", []) if t.get("content") == eot), None) if eot else None
    if eot_id is not None and eot_id not in ids:
        return Check("generation_config.json", False, f"eos_token_id {eos} lacks the end of turn {eot!r} "
                                                      f"(id {eot_id}): vLLM would run past each answer")
    return Check("generation_config.json", True, f"stops on ids {ids}" + (f" (end of turn {eot!r})" if eot else ""))
