"""The model families users bring: tiny random qwen2/qwen3, llama, mistral, gemma 2/3, phi3 and two
mixtures of experts (qwen2_moe, mixtral). Every method trains on each (or is refused with a clear
reason), LoRA finds its targets, and a LoRA run exports merged and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.e2e.conftest import write_config
from tuneforge.config import RunConfig, load_config
from tuneforge.config.catalog import METHOD_NAMES, method_spec
from tuneforge.models.tiny import FAMILIES, save_tiny_family
from tuneforge.utils.errors import ConfigError

pytestmark = pytest.mark.slow
#: What a family cannot do, and the words its refusal says it with.
REFUSED = {("llama", "bitfit"): "has none", ("qwen3", "bitfit"): "has none", ("mistral", "bitfit"): "has none",
           ("gemma2", "bitfit"): "has none", ("gemma3_text", "bitfit"): "has none", ("phi3", "bitfit"): "has none",
           ("mixtral", "bitfit"): "has none", ("mixtral", "dora"): "use_dora"}
#: A learning rate at which 3 steps move each method's loss on a tiny random model.
LR = {"full": 1e-3, "freeze": 1e-3, "lora": 1e-2, "qlora": 1e-2, "dora": 1e-2, "adalora": 1e-2, "ia3": 0.1,
      "ln_tuning": 0.05, "bitfit": 0.05, "prompt": 0.1, "ptuning": 1e-2, "prefix": 0.05, "adapter": 1e-2}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f: save_tiny_family(tokenizer, f, root / f) for f in FAMILIES}


def _apply(folder: Path, method: str) -> Any:
    from transformers import AutoModelForCausalLM

    from tuneforge.models.tuning import TUNING

    cfg = RunConfig.model_validate({"data": {"datasets": ["x.json"]}, "method": {
        "name": method, "lora": {"rank": 4}, "freeze": {"trainable_layers": 1}, "prompt_learning": {"virtual_tokens": 4}}})
    torch.manual_seed(0)
    return TUNING.get(method).apply(AutoModelForCausalLM.from_pretrained(folder), cfg)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_method_trains_on_every_family(family: str, family_dirs: dict[str, Path], tokenizer: Any) -> None:
    ids = torch.tensor([tokenizer("The capital of France is Paris. The capital of Italy is Rome.")["input_ids"]])
    for method in METHOD_NAMES:
        if (family, method) in REFUSED:
            with pytest.raises(ConfigError) as info:
                _apply(family_dirs[family], method)
            assert REFUSED[family, method] in str(info.value.problems[0]), (family, method)
            continue
        model = _apply(family_dirs[family], method)
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert trainable, (family, method)
        before = [p.detach().clone() for p in trainable]
        optimizer = torch.optim.AdamW(trainable, lr=LR[method])
        losses = []
        for _ in range(4):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss))
        assert losses[-1] < losses[0], (family, method, losses)
        assert any(not torch.equal(p, b) for p, b in zip(trainable, before, strict=True)), (family, method)
        spec = method_spec(method)
        if spec.adapter and spec.merges and not spec.quantised:  # merge = adapter, exactly
            model.eval()
            adapted = model(input_ids=ids).logits
            merged = model.merge_and_unload()(input_ids=ids).logits
            assert (merged - adapted).abs().max() < 1e-4, (family, method)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_lora_run_finds_its_targets_and_exports_merged(family: str, family_dirs: dict[str, Path], tmp_path: Path,
                                                         sft_data: Path) -> None:
    from tuneforge.export import export_run
    from tuneforge.training.runner import train

    cfg = write_config(tmp_path, family_dirs[family], sft_data, training={"max_steps": 3, "eval_steps": 3},
                       evaluation={"auto": False})
    result = train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in result.model.named_parameters() if ".lora_A" in n}
    attention = {"q_proj", "k_proj", "v_proj", "o_proj"} if family != "phi3" else {"qkv_proj", "o_proj"}
    assert attention <= adapted, (family, sorted(adapted))
    exported = export_run(str(result.run.root), str(tmp_path / "out"))
    assert exported.merged and exported.verification.ok and exported.verification.max_logit_diff < 1e-3
