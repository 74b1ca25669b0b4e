"""Silence library messages that are noise for tuneforge's users, and only those.

peft imports bitsandbytes whenever it is installed (``peft/helpers.py``), so every command that
touches peft loads it, even when nothing is quantised. On CPUs with avx512_bf16, bitsandbytes then
logs "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'": an
optional hub-downloaded kernel that tuneforge never uses (it would need the network at run time). The
filter drops exactly that record; every other bitsandbytes message still shows.

DeepSpeed, when installed, is imported by accelerate in every training run and warns on machines
without a GPU that it "set the accelerator to CPU", which is what tuneforge wants there.
"""

from __future__ import annotations

import logging

#: (logger name, text every dropped record contains).
_NOISE = [("bitsandbytes.backends.cpu.ops", "gemm_4bit_forward from kernels-community"),
          ("DeepSpeed", "Setting accelerator to CPU")]


class _DropText(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def silence_known_noise() -> None:
    """Attach the filters (idempotent; loggers exist before their libraries are imported)."""
    for name, text in _NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropText) and f.text == text for f in logger.filters):
            logger.addFilter(_DropText(text))
