"""Export: merge adapters into their base, save a plain transformers folder, verify it."""

from tuneforge.export.merge import ExportResult, export_run

__all__ = ["ExportResult", "export_run"]
