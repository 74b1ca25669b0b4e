"""Tiny random causal LMs (2 layers, hidden 64) with a real tokenizer's vocabulary, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_config(tokenizer: Any, **overrides: Any) -> Any:
    """A 2-layer Llama config sized for ``tokenizer`` (special token ids taken from it)."""
    from transformers import LlamaConfig

    values: dict[str, Any] = {
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
        "tie_word_embeddings": True, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
    }
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_model(tokenizer: Any, seed: int = 0, **overrides: Any) -> Any:
    """A randomly initialised (seeded) tiny model in float32."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(tokenizer, **overrides))


def save_tiny(tokenizer: Any, out: str | Path, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny model and the tokenizer into a folder any command can load."""
    out = Path(out)
    tiny_model(tokenizer, seed, **overrides).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


#: Tiny configs of the families users train today (``model_type`` -> overrides of the shared tiny shape).
#: Each keeps its family's own layout: qwen2's q/k/v biases, qwen3's q/k norms, gemma's head_dim and
#: sliding-window layers, phi3's fused qkv_proj and gate_up_proj, and two mixtures of experts.
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "mistral": {},
    "gemma2": {"head_dim": 16, "sliding_window": 64},
    "gemma3_text": {"head_dim": 16, "sliding_window": 64},
    "phi3": {},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 64},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
}


def family_config(tokenizer: Any, family: str) -> Any:
    """A 2-layer, hidden-64 config of ``family`` (a key of :data:`FAMILIES`) sized for ``tokenizer``."""
    from transformers import AutoConfig

    values = {k: v for k, v in tiny_config(tokenizer).to_dict().items()
              if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                       "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id",
                       "pad_token_id", "tie_word_embeddings")}
    return AutoConfig.for_model(family, **{**values, **FAMILIES[family]})


def save_tiny_family(tokenizer: Any, family: str, out: str | Path, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny random model of ``family`` (config ``overrides`` applied) and the tokenizer into a folder
    any command can load."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    out = Path(out)
    config = family_config(tokenizer, family)
    for key, value in overrides.items():
        setattr(config, key, value)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
