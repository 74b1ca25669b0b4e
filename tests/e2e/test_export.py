"""Export: the merged model answers exactly like base + adapter, and loads with plain transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.export import export_run
from tuneforge.export.merge import ExportError
from tuneforge.export.vllm import vllm_checks, vllm_ready
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_export_verifies_and_loads(tmp_path: Path, tiny_model_dir: Path, sft_data: Path, method: str) -> None:
    if method == "qlora":
        pytest.importorskip("bitsandbytes", reason="bitsandbytes is installed only on Linux")
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, method={"name": method}, training={"max_steps": 4})
    result = train(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)
    exported = export_run(str(result.run.root), str(tmp_path / "out"))
    assert exported.merged == (method != "full")
    assert exported.verification.ok and exported.verification.max_logit_diff < 1e-3
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert "<|im_start|>" in (tmp_path / "out" / "chat_template.jinja").read_text()
    with pytest.raises(ExportError, match="output exists"):
        export_run(str(result.run.root), str(tmp_path / "out"))
    checks = {c.name: c for c in exported.vllm}
    assert vllm_ready(exported.vllm) and all(c.ok for c in exported.vllm), exported.vllm
    assert "<|im_end|>" in checks["generation_config.json"].detail  # vLLM stops at the end of each turn


def test_vllm_checks_name_what_vllm_would_trip_on(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    """Each file vLLM reads, broken in turn, fails the check that reads it."""
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2})
    result = train(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)
    out = export_run(str(result.run.root), str(tmp_path / "out")).out

    def edit(name: str, change: Any) -> None:
        data = json.loads((out / name).read_text())
        change(data)
        (out / name).write_text(json.dumps(data))

    edit("generation_config.json", lambda d: d.update(eos_token_id=0))
    edit("config.json", lambda d: d.update(architectures=["MyForCausalLM"], auto_map={"AutoModel": "x.Y"}))
    (out / "chat_template.jinja").unlink()
    failed = {c.name: c for c in vllm_checks(out, max_length=128) if not c.ok}
    assert set(failed) == {"generation_config.json", "architectures", "trust_remote_code", "chat_template"}
    assert failed["architectures"].warning and not failed["trust_remote_code"].warning
    assert "run past each answer" in failed["generation_config.json"].detail
    assert not vllm_ready(list(failed.values()))
    assert not vllm_checks(out, max_length=10**6)[3].ok  # the context must hold the training length


def test_failed_verification_leaves_nothing(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2})
    result = train(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)
    with pytest.raises(ExportError, match="does not answer like"):
        export_run(str(result.run.root), str(tmp_path / "out"), threshold=-1.0)  # no difference can pass
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp*"))
