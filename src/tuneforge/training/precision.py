"""Pick device and precision: bf16 where it is really fast, fp16 on older GPUs, fp32 otherwise."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

#: bf16 is used on a CPU only when its matmul beats fp32 by this factor (CPUs without bf16
#: instructions emulate it and run 100x slower).
CPU_BF16_MIN_SPEEDUP = 1.2


@dataclass(frozen=True)
class Precision:
    """The compute setup of a run."""

    name: str  # bf16 | fp16 | fp32
    device: str  # cpu | cuda
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        """Torch dtype of the computation."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.name]


def choose_precision(requested: str = "auto") -> Precision:
    """The precision to train with; ``requested`` other than ``auto`` is honoured (with its device)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested != "auto":
        return Precision(requested, device, "set in the config")
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", device, "the GPU supports bf16")
        return Precision("fp16", device, "the GPU has no bf16: fp16 with loss scaling")
    speedup = cpu_bf16_speedup()
    if speedup >= CPU_BF16_MIN_SPEEDUP:
        return Precision("bf16", device, f"bf16 matmul is {speedup:.1f}x fp32 on this CPU")
    return Precision("fp32", device, f"bf16 matmul is {speedup:.2f}x fp32 on this CPU (no bf16 instructions)")


@functools.cache
def cpu_bf16_speedup(size: int = 512, repeats: int = 3) -> float:
    """Measured bf16 / fp32 matmul throughput ratio on this CPU (a ~50 ms probe, cached)."""
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size).to(dtype)
        a @ a  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            a @ a
        times[dtype] = time.perf_counter() - start
        if dtype is torch.bfloat16 and times[dtype] > 20 * times[torch.float32]:
            break  # emulated: no need to finish measuring
    return times[torch.float32] / times[torch.bfloat16]


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 10) -> float:
    """Dense matmul throughput on this machine (for utilisation figures)."""
    a = torch.randn(size, size).to(dtype)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9
