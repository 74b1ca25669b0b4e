"""Processors: canonical examples -> token columns a trainer consumes, one per example kind."""

from tuneforge.data.processors import labels, preference, pt, sft  # noqa: F401  (each registers its kinds)
from tuneforge.data.processors.base import (
    PROCESSORS,
    Processed,
    ProcessOptions,
    ProcessStats,
    process_examples,
)

__all__ = ["PROCESSORS", "ProcessOptions", "ProcessStats", "Processed", "process_examples"]
