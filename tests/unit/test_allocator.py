"""``training.cpu_allocator``: large blocks come from glibc's heap on a CPU, and only there.

docs/performance.md, "Large blocks from the heap". Each probe runs in a fresh interpreter, because the
setting is process-wide and glibc's mmap threshold also moves by itself as blocks are freed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tuneforge.training.allocator import (
    HEAP_BLOCK_LIMIT,
    KEEP_FREE,
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    _glibc,
    configure_allocator,
    use_heap_for_large_blocks,
)

# allocates a 64 MiB tensor (over glibc's largest default threshold, 32 MiB) and reports from mallinfo2
# how many bytes glibc holds in separate mappings while it lives
PROBE = """
import ctypes, json, sys
import torch
from tuneforge.training.allocator import configure_allocator

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
line = configure_allocator(sys.argv[1], sys.argv[2])
before = libc.mallinfo2().hblkhd
block = torch.ones(16 << 20)  # 64 MiB of fp32
mapped = libc.mallinfo2().hblkhd - before
print(json.dumps({"line": line, "mapped": mapped, "sum": float(block.sum())}))
"""

needs_glibc = pytest.mark.skipif(_glibc() is None, reason="mallopt and mallinfo2 are glibc's")


def _probe(mode: str, device: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_heap_serves_a_logits_sized_block_without_a_new_mapping() -> None:
    plain, heap = _probe("default", "cpu"), _probe("auto", "cpu")
    assert plain["line"] is None and plain["mapped"] >= 64 << 20  # glibc as it is: a fresh mmap
    assert heap["line"].startswith("allocator: blocks up to 1024 MiB")
    assert heap["mapped"] == 0 and heap["sum"] == float(16 << 20)


@needs_glibc
def test_a_gpu_run_leaves_glibc_alone() -> None:
    gpu = _probe("heap", "cuda")  # the large blocks of a GPU run are CUDA memory: glibc stays as it is
    assert gpu["line"] is None and gpu["mapped"] >= 64 << 20


class _Libc:
    """Records ``mallopt`` calls; ``accept`` is what glibc answers."""

    def __init__(self, accept: int) -> None:
        self.calls: list[tuple[int, int]] = []
        self.accept = accept

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.accept


def test_both_thresholds_are_set_and_a_refusal_is_reported() -> None:
    libc = _Libc(accept=1)
    assert use_heap_for_large_blocks(libc) is True  # type: ignore[arg-type]
    assert libc.calls == [(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT), (M_TRIM_THRESHOLD, KEEP_FREE)]
    assert use_heap_for_large_blocks(_Libc(accept=0)) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["auto", "heap", "default"])
def test_cpu_allocator_reaches_the_allocator_and_the_run_log(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    from tuneforge.config.schema import RunConfig
    from tuneforge.training.precision import Precision
    from tuneforge.training.runner import _set_allocator

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr("tuneforge.training.runner.configure_allocator",
                        lambda m, device: seen.append((m, device)) or f"allocator: {m}")
    said: list[str] = []
    _set_allocator(RunConfig.model_validate({"data": {"datasets": ["x.json"]}, "training": {"cpu_allocator": mode}}), Precision("bf16", "cpu", "t"),
                   said.append)
    assert seen == [(mode, "cpu")] and said == [f"allocator: {mode}"]


def test_default_never_touches_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tuneforge.training.allocator.use_heap_for_large_blocks",
                        lambda *a: pytest.fail("mallopt called"))
    assert configure_allocator("default", "cpu") is None
    assert configure_allocator("auto", "cuda") is None
