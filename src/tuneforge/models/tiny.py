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
