"""Training end to end on tiny random models: every method, both stages, resume, Ctrl-C, NaN, refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import write_jsonl
from tests.e2e.conftest import losses, write_config
from tuneforge.config import load_config
from tuneforge.training.rundir import RunExistsError
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "tuneforge.cli.main"]


def _initial(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


def _base_params(model: Any) -> dict[str, torch.Tensor]:
    """Parameters of the (possibly PEFT-wrapped) model under their plain transformers names."""
    out = {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        clean = name.replace("base_model.model.", "").replace(".base_layer", "")
        out[clean] = p.detach()
    return out


def _run(tmp_path: Path, model: Path, data: Path, **sections: dict[str, Any]) -> Any:
    cfg_path = write_config(tmp_path, model, data, **sections)
    return train(load_config(cfg_path), str(cfg_path), progress=False, echo=lambda m: None)


@pytest.mark.parametrize("method", ["full", "freeze", "lora", "dora"])
def test_each_method_learns_and_trains_only_its_parameters(tmp_path: Path, tiny_model_dir: Path, sft_data: Path,
                                                           method: str) -> None:
    lr = 1e-3 if method in ("full", "freeze") else 5e-3
    result = _run(tmp_path, tiny_model_dir, sft_data, method={"name": method, "freeze": {"trainable_layers": 1}},
                  training={"learning_rate": lr})
    curve = losses(result.run.root)
    assert curve[8] < curve[1], curve
    before, after = _initial(tiny_model_dir), _base_params(result.model)
    # an adapter's frozen base may be held in bf16 (training.frozen_precision): compare in the dtype it is held in
    changed = {k for k, v in after.items() if k in before and not torch.equal(v, before[k].to(v.dtype))}
    if method == "full":
        assert "model.layers.0.self_attn.q_proj.weight" in changed and "model.norm.weight" in changed
    elif method == "freeze":
        assert changed and all(k.startswith("model.layers.1.") for k in changed)
    else:  # adapters: the base is untouched, the adapters moved
        assert not changed
        lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
        assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    assert (result.run.root / "report.md").is_file() and (result.run.root / "plots" / "loss.png").is_file()
    assert (result.run.model / "tuneforge_training.json").is_file()


@pytest.mark.parametrize(("bits", "layer"), [(4, "Linear4bit"), (8, "Linear8bitLt")])
def test_qlora_trains_on_cpu(tmp_path: Path, tiny_model_dir: Path, sft_data: Path, bits: int, layer: str) -> None:
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is installed only on Linux")
    result = _run(tmp_path, tiny_model_dir, sft_data, method={"name": "qlora", "quant_bits": bits})
    curve = losses(result.run.root)
    assert curve[8] < curve[1]
    assert any(layer in type(m).__name__ for m in result.model.modules())


def test_pretraining_stage(tmp_path: Path, tiny_model_dir: Path) -> None:
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": f"Document {i}: the sky is blue and grass is green. " * 3}
                                                 for i in range(40)])
    result = _run(tmp_path, tiny_model_dir, docs, training={"stage": "pt"}, method={"name": "full"})
    curve = losses(result.run.root)
    assert curve[8] < curve[1]


def test_finished_runs_are_not_overwritten(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    result = _run(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2})
    with pytest.raises(RunExistsError):
        _run(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2})
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 2})
    again = train(load_config(cfg_path), str(cfg_path), overwrite=True, progress=False, echo=lambda m: None)
    assert again.steps == 2 and result.run.root == again.run.root


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_kill_9_then_resume_continues_the_same_curve(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    steps = {"max_steps": 12, "save_steps": 3, "eval_steps": 6}
    reference = _run(tmp_path / "a", tiny_model_dir, sft_data, training=steps)
    cfg = write_config(tmp_path / "b", tiny_model_dir, sft_data, training=steps)
    cmd = [*CLI, "train", str(cfg), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for(tmp_path / "b" / "runs" / "r" / "checkpoints" / "checkpoint-6", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed_at = int(done.stdout.split("resuming from")[1].split("checkpoint-")[1].split(")")[0])
    assert resumed_at in (6, 9)  # really in the middle of the run (and of an epoch: 8 steps per epoch)
    ours, theirs = losses(tmp_path / "b" / "runs" / "r"), losses(reference.run.root)
    assert sorted(ours) == list(range(1, 13))  # no duplicate or missing log lines
    for step in range(1, 13):
        assert abs(ours[step] - theirs[step]) < 1e-4, (step, ours[step], theirs[step])


def test_ctrl_c_saves_and_exits_zero_then_resumes(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 400, "save_steps": 200})
    cmd = [*CLI, "train", str(cfg), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(tmp_path / "runs" / "r" / "train_log.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "interrupted: checkpoint saved at step" in out
    checkpoints = list((tmp_path / "runs" / "r" / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1 and int(checkpoints[0].name.split("-")[1]) < 400


def test_nan_loss_stops_with_a_clear_error(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, sft_data, method={"name": "full"},
                       training={"learning_rate": 1e30, "max_grad_norm": 1e30, "max_steps": 12, "save_steps": 100})
    done = subprocess.run([*CLI, "train", str(cfg), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "NaN/inf" in done.stderr and "learning_rate" in done.stderr
    assert not list((tmp_path / "runs" / "r" / "checkpoints").glob("checkpoint-*"))


def test_chat_answers_from_a_run_folder(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    from tuneforge.data.records import Message
    from tuneforge.inference import Engine, GenerationOptions

    result = _run(tmp_path, tiny_model_dir, sft_data, training={"max_steps": 4})
    done = subprocess.run([*CLI, "chat", str(result.run.root), "--prompt", "What is 1 plus 2?", "--temperature", "0",
                           "--max-new-tokens", "6"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    engine = Engine.load(str(result.run.root))
    assert type(engine.model).__name__.startswith("Peft")  # the adapter is applied on its base
    expected = engine.chat([Message("user", "What is 1 plus 2?")], GenerationOptions(6, 0.0))
    assert done.stdout == expected + "\n"


def test_device_map_auto_trains_lora_and_serves_the_result(tmp_path: Path, tiny_model_dir: Path, sft_data: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """model.device_map auto reaches from_pretrained for training and for chat/eval/serve; the adapter
    trains and the result generates. (On a CPU-only machine accelerate puts every layer on the CPU; the
    spread over several GPUs is accelerate's own and needs GPUs to be seen.)"""
    from transformers import AutoModelForCausalLM

    from tuneforge.inference import Engine, GenerationOptions

    asked: list[Any] = []
    real = AutoModelForCausalLM.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("device_map"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    cfg_path = write_config(tmp_path, tiny_model_dir, sft_data)
    result = train(load_config(cfg_path, ["model.device_map=auto", "evaluation.auto=false"]), str(cfg_path),
                   progress=False, echo=lambda m: None)
    curve = losses(result.run.root)
    assert asked == ["auto"] and curve[8] < curve[1]
    engine = Engine.load(str(result.run.root), device_map="auto")
    assert asked == ["auto", "auto"]
    assert isinstance(engine.generate_batch([[]], GenerationOptions(3, temperature=0.0))[0], str)
