"""Pick device and precision: bf16 where it is really fast, fp16 on older GPUs, fp32 otherwise."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: bf16 is used on a CPU with bf16 instructions only when its matmul beats fp32 by this factor
#: (AMX CPUs measure 3-10x; a CPU whose flag is not backed by fast kernels measures about 1x).
CPU_BF16_MIN_SPEEDUP = 1.5


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
    return cpu_precision(cpu_bf16_flags(), cpu_bf16_speedup)


def cpu_precision(flags: frozenset[str], speedup: Callable[[], float]) -> Precision:
    """bf16 on a CPU only when it has bf16 instructions and a matmul probe confirms they are fast.

    The capability decides first: without bf16 instructions bf16 is emulated (about 100x slower), so
    no probe is run. With them, the probe (a median of several timings, see :func:`cpu_bf16_speedup`)
    guards against a CPU that reports the flag but runs bf16 no faster (a hypervisor hiding AMX state).
    """
    if not flags:
        return Precision("fp32", "cpu", "this CPU has no bf16 instructions (no avx512_bf16 or amx_bf16): "
                                        "bf16 would be emulated")
    have = "/".join(sorted(flags))
    ratio = speedup()
    if ratio >= CPU_BF16_MIN_SPEEDUP:
        return Precision("bf16", "cpu", f"the CPU has {have}; bf16 matmul measured {ratio:.2f}x fp32")
    return Precision("fp32", "cpu", f"the CPU reports {have}, but bf16 matmul measured only {ratio:.2f}x fp32")


#: CPU feature flags (Linux /proc/cpuinfo names) that mean native bf16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # "bf16": Arm's FEAT_BF16


@functools.cache
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The bf16 instruction flags this CPU reports (empty where /proc/cpuinfo is missing)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            words = set(fh.read().split())
    except OSError:
        return frozenset()
    return BF16_FLAGS & words


@functools.cache
def cpu_bf16_speedup(size: int = 1024, repeats: int = 7) -> float:
    """Measured fp32 / bf16 matmul time ratio on this CPU: the median of ``repeats`` single timings.

    A 1024 x 1024 matmul (about 2 GFLOP) takes milliseconds, long enough to time; the median of seven
    ignores the outliers a shared machine produces. Cached: measured once per process.
    """
    medians = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size).to(dtype)
        a @ a  # warm-up (kernel selection, caches)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        medians[dtype] = statistics.median(times)
    return medians[torch.float32] / medians[torch.bfloat16]


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 10) -> float:
    """Dense matmul throughput on this machine (for utilisation figures)."""
    a = torch.randn(size, size).to(dtype)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9
