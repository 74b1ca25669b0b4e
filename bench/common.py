"""Helpers shared by the bench scripts (standard library only: bench/lf_child.py imports it in LF's venv)."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM), in MB.

    Not ``getrusage``: on Linux its ``ru_maxrss`` survives ``exec`` and so reports the parent's peak
    when the parent was bigger, which made two contenders read the same figure.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: no exec carry-over known
