"""Distributed training for real: 2 CPU processes over gloo (DDP, FSDP2, DeepSpeed ZeRO 1-3), two machines
simulated on loopback, kill -9 of one worker and resume, saving, and the launch errors.

Tolerance of the loss comparisons: fp32 throughout; one process and two compute the same sums over the
same tokens, only added in another order (per-rank partial sums, then an all-reduce), which moves a
loss of ~10 by a few 1e-7 per step. 1e-5 is 10x the largest difference measured over 8 steps (9.5e-7)
and far below what a wrong reduction gives: a loss not scaled back by the process count logged half the
true loss (5.4 instead of 10.8) while it was being written, and a mean of per-rank means weighs each
rank's tokens by its own count, not the global one, which the ranks' unequal answer lengths expose.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.conftest import losses, write_config
from tuneforge.config import load_config
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "tuneforge.cli.main", "train"]
ROOT = Path(__file__).resolve().parents[2]  # workers import tests.* (user reward functions) from here
TOL = 1e-5
STEPS = {"max_steps": 8, "save_steps": 4, "eval_steps": 4, "precision": "fp32"}
TWO = ["distributed.nproc_per_node=2", "training.batch_size=2"]  # the global batch of one process with 4


def _launch(cfg: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, str(cfg), *overrides, "--no-progress"], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _same_curve(ours: dict[int, float], theirs: dict[int, float]) -> None:
    assert sorted(ours) == sorted(theirs), (ours, theirs)  # each step logged once: one writer
    for step, loss in theirs.items():
        assert abs(ours[step] - loss) < TOL, (step, ours[step], loss)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """One-process runs (LoRA and full) with the global batch the distributed runs use."""
    from tests.conftest import write_json
    from tests.e2e.conftest import QA

    tmp = tmp_path_factory.mktemp("dist-ref")
    data = write_json(tmp / "qa.json", QA)
    out: dict[str, Any] = {"data": data}
    for method, lr in (("lora", 5e-3), ("full", 1e-3)):
        cfg = write_config(tmp / method, tiny_model_dir, data, training={**STEPS, "learning_rate": lr},
                           method={"name": method})
        result = train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)
        out[method] = {"losses": losses(result.run.root), "model": result.run.model, "lr": lr}
    return out


def _config(tmp_path: Path, model: Path, reference: dict[str, Any], method: str = "lora", **sections: Any) -> Path:
    training = {**STEPS, "learning_rate": reference[method]["lr"], **sections.pop("training", {})}
    return write_config(tmp_path, model, reference["data"], training=training, method={"name": method}, **sections)


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in folder.glob("*.safetensors"):
        out.update(load_file(str(f)))
    return out


def _check_one_run_folder(run: Path, world: int) -> None:
    """Rank 0 wrote the log, events, report and model once; every rank left its RNG state in checkpoints."""
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    assert (run / "report.md").is_file() and json.loads((run / "tuneforge_run.json").read_text())["status"] == "finished"
    report = (run / "report.md").read_text()
    assert f"x {world} processes" in report  # the global batch is reported
    for ckpt in (run / "checkpoints").glob("checkpoint-*"):
        assert sorted(p.name for p in ckpt.glob("rng_state_*.pth")) == [f"rng_state_{r}.pth" for r in range(world)]
    assert not list((run / "checkpoints").glob(".staging-*")) and not (run / ".model.tmp").exists()


# `make test` keeps DDP with an adapter, the launch errors and Ctrl-C: every other multi-process test starts two
# workers that fill both cores for one to three minutes each (about 10 of `make test`'s 15 minutes on a 2-core
# CPU without bf16), so FSDP, every ZeRO stage, kill -9, two machines and the sharded full fine-tunes run in
# CI only, with `make test-ci` (`.ci/run` runs both).
@pytest.mark.parametrize("strategy", ["ddp", *(pytest.param(s, marks=pytest.mark.ci)
                                               for s in ("fsdp", "deepspeed-1", "deepspeed-2", "deepspeed-3"))])
def test_two_workers_train_like_one_and_save_a_complete_adapter(tmp_path: Path, tiny_model_dir: Path,
                                                                reference: dict[str, Any], strategy: str) -> None:
    name, _, stage = strategy.partition("-")
    extra = [f"distributed.zero_stage={stage}"] if stage else []
    sharded = strategy in ("fsdp", "deepspeed-3")  # weights sharded: rank 0 evaluates and exports from disk
    evaluate = [f"evaluation.file={reference['data']}", "evaluation.max_samples=2", "evaluation.max_new_tokens=4"]
    cfg = _config(tmp_path, tiny_model_dir, reference)
    out = _ok(_launch(cfg, f"distributed.strategy={name}", *TWO, *extra, *(evaluate if sharded else [])))
    run = tmp_path / "runs" / "r"
    assert f"distributed: {name}, 2 processes" in out
    _same_curve(losses(run), reference["lora"]["losses"])
    _check_one_run_folder(run, 2)
    # the engine really ran (accelerate alone would fall back to DDP on CPU without a word): its own
    # checkpoint layout - FSDP's sharded model and optimizer, DeepSpeed's per-rank ZeRO states
    engine_files = {"ddp": "optimizer.pt", "fsdp": "pytorch_model_fsdp_0", "deepspeed": "global_step8"}
    assert (run / "checkpoints" / "checkpoint-8" / engine_files[name]).exists()
    if stage:  # the generated DeepSpeed JSON is kept beside the resolved config
        ds = json.loads((run / "deepspeed.json").read_text())
        assert ds["zero_optimization"]["stage"] == int(stage) and ds["train_batch_size"] == 4
    ours, theirs = _tensors(run / "model"), _tensors(reference["lora"]["model"])
    assert ours.keys() == theirs.keys() and any("lora_A" in k for k in ours)  # complete, not empty
    for key, value in theirs.items():
        assert ours[key].shape == value.shape and ours[key].abs().sum() > 0
        assert torch.allclose(ours[key].float(), value.float(), atol=1e-4), key
    if sharded:  # eval and export work on the result as on a one-process run
        assert (run / "eval" / "eval.md").is_file()
        from tuneforge.export import export_run

        exported = export_run(str(run), str(tmp_path / "merged"))
        assert exported.merged and exported.verification.ok


@pytest.mark.ci  # with the others above: CI only
@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed-3"])
def test_a_sharded_full_fine_tune_saves_one_consolidated_model(tmp_path: Path, tiny_model_dir: Path,
                                                               reference: dict[str, Any], strategy: str) -> None:
    """FSDP with its own activation checkpointing; ZeRO-3 with optimizer states and weights offloaded."""
    name, _, stage = strategy.partition("-")
    extra = [f"distributed.zero_stage={stage}", "distributed.offload=optimizer+params"] if stage else \
        ["distributed.fsdp.activation_checkpointing=true"]
    cfg = _config(tmp_path, tiny_model_dir, reference, method="full")
    _ok(_launch(cfg, f"distributed.strategy={name}", *TWO, *extra))
    run = tmp_path / "runs" / "r"
    _same_curve(losses(run), reference["full"]["losses"])
    ours, theirs = _tensors(run / "model"), _tensors(reference["full"]["model"])
    if "lm_head.weight" in ours.keys() - theirs.keys():  # FSDP's gathered state dict writes the tied head out
        assert torch.equal(ours.pop("lm_head.weight"), ours["model.embed_tokens.weight"])  # still tied
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():  # ZeRO-3 saves 16-bit weights; FSDP gathers the fp32 ones
        assert torch.allclose(ours[key].float(), value.float(), atol=1e-2 if stage else 1e-4), key
    from tuneforge.inference import Engine, GenerationOptions

    answer = Engine.load(str(run)).generate_batch([[]], GenerationOptions(4, temperature=0.0))
    assert isinstance(answer[0], str)  # chat/eval load the result like any run


def _worker_pid(launcher: int, rank: int) -> int:
    """The pid of this launcher's worker with this global rank (read from the worker's environment).

    Only the launcher's own descendants: tests running beside this one have workers of the same rank.
    """
    import psutil

    for child in psutil.Process(launcher).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "tuneforge.cli.main" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no rank-{rank} worker under process {launcher}")


@pytest.mark.ci  # ~100 s of two workers: CI only (see above)
def test_kill_9_of_one_worker_stops_the_job_and_the_same_command_resumes_exactly(
        tmp_path: Path, tiny_model_dir: Path, reference: dict[str, Any]) -> None:
    steps = {"max_steps": 40, "save_steps": 4, "eval_steps": 40}
    one = _config(tmp_path / "one", tiny_model_dir, reference, training=steps)
    curve = losses(train(load_config(one), str(one), progress=False, echo=lambda m: None).run.root)
    cfg = _config(tmp_path / "two", tiny_model_dir, reference, training=steps)
    cmd = [*CLI, str(cfg), "distributed.strategy=ddp", *TWO, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    first = tmp_path / "two" / "runs" / "r" / "checkpoints" / "checkpoint-4"
    deadline = time.time() + 180
    while not first.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    victim = _worker_pid(proc.pid, 1)
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]
    assert f"worker rank 1 (pid {victim}) was killed by SIGKILL" in out
    done = _ok(_launch(cfg, "distributed.strategy=ddp", *TWO))
    resumed_at = int(done.split("checkpoint-")[1].split(")")[0].split()[0])
    assert 4 <= resumed_at < 40
    _same_curve(losses(tmp_path / "two" / "runs" / "r"), curve)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


@pytest.mark.ci  # ~90 s of two workers: CI only (see above)
def test_two_machines_on_loopback_train_like_one(tmp_path: Path, tiny_model_dir: Path,
                                                 reference: dict[str, Any]) -> None:
    cfg = _config(tmp_path, tiny_model_dir, reference)
    node = ["distributed.strategy=ddp", "distributed.nnodes=2", "distributed.nproc_per_node=1",
            f"distributed.master_port={_free_port()}", "training.batch_size=2", "distributed.timeout=120"]
    printed = _ok(_launch(cfg, *node, "--print-launch"))
    commands = [line for line in printed.splitlines() if line.startswith("tuneforge train")]
    assert len(commands) == 2 and "distributed.node_rank=1" in commands[1]
    second = subprocess.Popen([*CLI, str(cfg), *node, "distributed.node_rank=1", "--no-progress"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = _launch(cfg, *node, "distributed.node_rank=0")
    out, _ = second.communicate(timeout=120)
    _ok(first)
    assert second.returncode == 0, out[-3000:]
    _same_curve(losses(tmp_path / "runs" / "r"), reference["lora"]["losses"])


@pytest.mark.ci
@pytest.mark.parametrize("stage", ["rm", "dpo", "simpo", "orpo", "kto", "grpo"])
def test_alignment_stages_run_under_ddp(tmp_path: Path, tiny_model_dir: Path, stage: str) -> None:
    from tests.conftest import write_json
    from tests.e2e.test_alignment import DATA, SAMPLING

    data = write_json(tmp_path / f"{stage}.json", DATA[stage])
    cfg = write_config(tmp_path, tiny_model_dir, data, training={"stage": stage, "max_steps": 2, "save_steps": 2,
                                                                 "eval_steps": 2, "precision": "fp32"},
                       alignment=SAMPLING if stage == "grpo" else {})
    out = _ok(_launch(cfg, "distributed.strategy=ddp", *TWO))
    run = tmp_path / "runs" / "r"
    assert "distributed: ddp, 2 processes" in out
    assert json.loads((run / "tuneforge_run.json").read_text())["step"] == 2
    assert any(v.abs().sum() > 0 for v in _tensors(run / "model").values())


def test_launch_errors_are_clear_and_bounded(tmp_path: Path, tiny_model_dir: Path, reference: dict[str, Any]) -> None:
    cfg = _config(tmp_path, tiny_model_dir, reference)
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = _launch(cfg, "distributed.strategy=ddp", *TWO, f"distributed.master_port={port}")
    assert taken.returncode == 2 and f"port {port} on this machine is taken" in taken.stderr
    many = ["distributed.strategy=ddp", "distributed.nnodes=2", "distributed.nproc_per_node=1",
            f"distributed.master_port={_free_port()}", "distributed.timeout=5"]
    started = time.monotonic()
    alone = _launch(cfg, *many, "distributed.node_rank=0", timeout=120)
    assert alone.returncode == 1 and "1/2 clients joined" in alone.stderr and "machines did not all join" in alone.stderr
    unreachable = _launch(cfg, *many, "distributed.node_rank=1", timeout=120)
    assert unreachable.returncode == 2 and "did not answer within 5 s" in unreachable.stderr
    assert time.monotonic() - started < 90  # bounded by distributed.timeout, not a hang


def test_ctrl_c_stops_every_worker_at_the_same_step_with_a_checkpoint(tmp_path: Path, tiny_model_dir: Path,
                                                                      reference: dict[str, Any]) -> None:
    cfg = _config(tmp_path, tiny_model_dir, reference, training={"max_steps": 400, "save_steps": 200,
                                                                 "eval_steps": 400})
    proc = subprocess.Popen([*CLI, str(cfg), "distributed.strategy=ddp", *TWO, "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = tmp_path / "runs" / "r" / "train_log.jsonl"
    deadline = time.time() + 180
    while not log.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the launcher's process group
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "interrupted: checkpoint saved at step" in out, out[-3000:]
    (checkpoint,) = (tmp_path / "runs" / "r" / "checkpoints").glob("checkpoint-*")
    assert int(checkpoint.name.split("-")[1]) < 400
    assert sorted(p.name for p in checkpoint.glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
