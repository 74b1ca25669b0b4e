"""export --format gguf: the file loads back (transformers' GGUF loader) and answers as the run did; chat reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.export import export_gguf
from tuneforge.export.merge import ExportError
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, model: Path, data: Path, **sections: Any) -> Path:
    cfg = write_config(tmp_path, model, data, training={"max_steps": 4, "eval_steps": 4},
                       evaluation={"auto": False}, **sections)
    return train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None).run.root


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_a_lora_run_exports_to_gguf_and_answers_the_same(tmp_path: Path, tokenizer: Any, sft_data: Path,
                                                         family: str) -> None:
    from tuneforge.models.tiny import save_tiny_family

    # qwen3 at its released head size, the one transformers' GGUF loader (the verifier) reads
    extra = {"head_dim": 128} if family == "qwen3" else {}
    run = _run(tmp_path, save_tiny_family(tokenizer, family, tmp_path / "base", **extra), sft_data)
    f16 = export_gguf(str(run), str(tmp_path / "f16"))
    assert f16.path.suffix == ".gguf" and f16.tokenizer_equal
    # the file holds exactly what was meant: against its own rounded weights the answers are the same
    assert f16.exact.greedy_equal == f16.exact.probes == 3 and f16.exact.max_logit_diff < 1e-3
    assert f16.verification.max_logit_diff < 0.15  # and f16 rounding barely moves the run's logits
    q8 = export_gguf(str(run), str(tmp_path / "q8"), quant="q8_0")
    assert q8.path.stat().st_size < 0.7 * f16.path.stat().st_size  # 8.5 bits a weight against 16
    assert q8.exact.greedy_equal == 3 and q8.verification.max_logit_diff > f16.verification.max_logit_diff
    report = json.loads(q8.path.with_name(f"{q8.path.stem}.verification.json").read_text())
    assert report["quant"] == "q8_0" and report["tokenizer_equal"]
    assert report["against_stored_weights"]["greedy_equal"] == report["against_merged_model"]["probes"] == 3
    modelfile = f16.modelfile.read_text()
    assert modelfile.startswith(f"FROM ./{f16.path.name}\n") and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile  # a ChatML model: Ollama gets the template in its syntax


@pytest.mark.ci  # make test-ci installs llama-cpp-python (it builds llama.cpp from source)
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_llama_cpp_runs_the_file_as_the_stored_weights(tmp_path: Path, tokenizer: Any, sft_data: Path,
                                                        family: str) -> None:
    import llama_cpp  # noqa: F401  (a missing package fails here, as it should in make test-ci)

    from tuneforge.models.tiny import save_tiny_family

    extra = {"head_dim": 128} if family == "qwen3" else {}
    run = _run(tmp_path, save_tiny_family(tokenizer, family, tmp_path / "base", **extra), sft_data)
    for quant in ("f16", "q8_0"):
        native = export_gguf(str(run), str(tmp_path / quant), quant=quant).llama_cpp
        assert native is not None and "crashed" not in native, native
        assert native["tokenizer_equal"], native  # llama.cpp splits text as the run does
        assert native["min_cosine"] > 0.99, native  # and computes what the file stores
        report = json.loads((tmp_path / quant / f"r-{quant}.verification.json").read_text())
        assert report["llama_cpp"]["probes"] == 3


def test_chat_reads_the_gguf_and_answers_as_the_run(tmp_path: Path, tiny_model_dir: Path, sft_data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.data.records import Message
    from tuneforge.inference import Engine, GenerationOptions

    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path / "cache"))  # chat converts the file into its cache once
    from tuneforge.models.loading import trained_system

    run = _run(tmp_path, tiny_model_dir, sft_data, template={"system": "You are Forge."})
    f16 = export_gguf(str(run), str(tmp_path / "gguf"))
    assert trained_system(str(f16.path)) == "You are Forge."  # chat asks the file as it asks the run
    assert 'SYSTEM """You are Forge."""' in f16.modelfile.read_text()
    opts = GenerationOptions(10, 0.0)
    for question in ("What is 1 plus 2?", "Name a colour."):
        ask = [Message("user", question)]
        assert Engine.load(str(f16.path)).chat(ask, opts) == Engine.load(str(run)).chat(ask, opts)


def test_unwritable_requests_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_gguf(str(tmp_path / "run"), str(tmp_path / "out"), quant="q4_k_m")
    assert "llama-quantize" in info.value.problems[0].fix
    with pytest.raises(ExportError):
        export_gguf(str(tmp_path / "run"), str(tmp_path / "out"), quant="q3")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError) as info:
        export_gguf(str(tmp_path / "run"), str(tmp_path / "taken"))
    assert "overwrite" in info.value.problems[0].fix
    assert not (tmp_path / "out").exists()


def test_awq_and_gptq_name_what_they_need(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tuneforge.cli.main import app

    for fmt, package in (("awq", "llmcompressor"), ("gptq", "gptqmodel")):
        out = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / fmt), "--format", fmt])
        assert out.exit_code != 0 and package in out.output and "CUDA" in out.output
        assert not (tmp_path / fmt).exists()
