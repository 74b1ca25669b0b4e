"""Export: the merged model answers exactly like base + adapter, and loads with plain transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from tests.e2e.conftest import write_config
from tuneforge.config import load_config
from tuneforge.export import export_run
from tuneforge.export.merge import ExportError
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


def test_failed_verification_leaves_nothing(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2})
    result = train(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)
    with pytest.raises(ExportError, match="does not answer like"):
        export_run(str(result.run.root), str(tmp_path / "out"), threshold=-1.0)  # no difference can pass
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp*"))
