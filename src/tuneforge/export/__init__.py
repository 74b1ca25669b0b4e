"""Export: merge adapters into their base, save a plain transformers folder or a GGUF file, verify it."""

from tuneforge.export.gguf import GgufResult, export_gguf
from tuneforge.export.merge import ExportResult, export_run
from tuneforge.export.quantise import refuse_weight_quantisation

__all__ = ["ExportResult", "GgufResult", "export_gguf", "export_run", "refuse_weight_quantisation"]
