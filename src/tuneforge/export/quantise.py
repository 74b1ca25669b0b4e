"""``--format awq|gptq``: 4-bit weight quantisation by calibration, which needs a CUDA GPU and its library.

The maintained libraries (gptqmodel for GPTQ, llm-compressor for AWQ; AutoAWQ is archived) run their
calibration kernels on CUDA. Where neither the GPU nor the library is present the export is refused
before anything is written, naming what is missing.
"""

from __future__ import annotations

import importlib.util

from tuneforge.export.merge import ExportError
from tuneforge.utils.errors import Problem

#: format -> (the library's import name, its PyPI package).
LIBRARIES = {"gptq": ("gptqmodel", "gptqmodel"), "awq": ("llmcompressor", "llmcompressor")}


def refuse_weight_quantisation(fmt: str) -> None:
    """Raise the reason ``fmt`` cannot be written on this machine (always, until a GPU path is tested)."""
    import torch

    module, package = LIBRARIES[fmt]
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (its calibration runs CUDA kernels)")
    if importlib.util.find_spec(module) is None:
        missing.append(f"the {package} package")
    reason = " and ".join(missing) or "a GPU run of this export, which has not been tested yet"
    raise ExportError(f"--format {fmt} cannot be written here", [Problem(
        f"{fmt.upper()} quantisation needs {reason}", field="--format",
        fix=f"on a CUDA machine: pip install {package}, then quantise the merged folder from `--format hf`; "
            "here, use --format gguf --quant q8_0 for an 8-bit file")])
