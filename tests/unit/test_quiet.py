"""A newcomer's first command prints no library noise (bitsandbytes' optional-kernel warning)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_json

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


def test_a_command_prints_no_kernels_line(tmp_path: Path) -> None:
    data = write_json(tmp_path / "d.json", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)])
    exe = Path(sys.executable).parent / "tuneforge"
    out = subprocess.run([str(exe), "data", "check", str(data)], capture_output=True, text=True, timeout=300)
    assert "records" in out.stdout + out.stderr
    assert "kernels" not in out.stdout + out.stderr
