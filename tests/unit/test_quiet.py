"""A newcomer's first command prints no library noise (bitsandbytes' optional-kernel warning)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

NOISE = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"


def test_the_kernels_warning_is_dropped_and_nothing_else() -> None:
    import tuneforge  # noqa: F401 - installs the filter

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    logger.addHandler(handler)
    try:
        logger.warning(NOISE)
        logger.warning("a real bitsandbytes problem")
    finally:
        logger.removeHandler(handler)
    assert buf.getvalue() == "a real bitsandbytes problem\n"


def test_importing_peft_after_tuneforge_prints_no_kernels_line() -> None:
    """peft imports bitsandbytes whenever it is installed, so every command that trains, merges or loads an
    adapter would print the line (on CPUs with avx512_bf16, where bitsandbytes looks for the kernel)."""
    code = "import tuneforge, peft, bitsandbytes; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "imported" in out.stdout, out.stderr
    assert "kernels" not in out.stdout + out.stderr
