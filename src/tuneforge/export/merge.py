"""``tuneforge export RUN --out DIR``: a plain transformers folder that answers exactly like the run."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.data.templates import resolve_template
from tuneforge.export.verify import Verification, compare
from tuneforge.models.loading import load_tokenizer, resolve_model, trained_folder
from tuneforge.utils.errors import Problem, TuneforgeError

#: Largest logit difference accepted between the merged model and base + adapter (fp32).
MAX_LOGIT_DIFF = 1e-3


class ExportError(TuneforgeError):
    """The export could not be made or did not verify."""


@dataclass
class ExportResult:
    """Where the export went and how it verified."""

    out: Path
    merged: bool
    verification: Verification


def export_run(run: str, out: str, overwrite: bool = False, threshold: float = MAX_LOGIT_DIFF) -> ExportResult:
    """Merge (if an adapter), save with tokenizer + training chat template + metadata, reload and verify.

    Raises:
        ExportError: no trained model, an existing ``out`` without ``overwrite``, or a failed verification
            (then nothing is left at ``out``).
    """
    src = Path(trained_folder(run))
    meta_path = src / "tuneforge_training.json"
    if not meta_path.is_file():
        raise ExportError("not a tuneforge training result", [Problem(
            "no tuneforge_training.json", file=str(src), fix="point at a finished run folder or its model/ folder")])
    target = Path(out)
    if target.exists() and not overwrite:
        raise ExportError("output exists", [Problem("refusing to overwrite", file=str(target),
                                                    fix="pass --overwrite or choose another --out")])
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(str(src))
    reference = _reference(src, meta)
    merged = reference.merge_and_unload() if meta["adapter"] else reference
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save(merged, tokenizer, meta, tmp)
    candidate = _model_class(meta).from_pretrained(tmp, dtype=torch.float32, **_head(meta, tokenizer)).eval()
    reference = _reference(src, meta)  # merge_and_unload modified the first one in place
    result = compare(reference, candidate, tokenizer, resolve_template("auto", tokenizer),
                     generate=meta.get("stage") != "rm")
    if not result.ok or result.max_logit_diff > threshold:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError("the exported model does not answer like the trained one", [Problem(
            f"max logit difference {result.max_logit_diff:.2e} (limit {threshold:.0e}); greedy answers equal on "
            f"{result.greedy_equal}/{result.probes} probes; " + "; ".join(result.mismatches[:2]), file=str(src),
            fix="report this; the adapter itself is unchanged and still usable")])
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return ExportResult(target, bool(meta["adapter"]), result)


def _model_class(meta: dict[str, Any]) -> Any:
    """A reward model keeps its scalar head (sequence classification); every other stage is a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if meta.get("stage") == "rm" else AutoModelForCausalLM


def _head(meta: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """Loading keywords of a reward model: one output, padded as in training (the head reads the last real token)."""
    return {"num_labels": 1, "pad_token_id": tokenizer.pad_token_id} if meta.get("stage") == "rm" else {}


def _reference(src: Path, meta: dict[str, Any]) -> Any:
    """The trained model as training left it: base (de-quantised: loaded in fp32) + adapter, or the full model."""
    tokenizer = load_tokenizer(str(src))
    if not meta["adapter"]:
        return _model_class(meta).from_pretrained(src, dtype=torch.float32, **_head(meta, tokenizer)).eval()
    from peft import PeftModel

    base = _model_class(meta).from_pretrained(resolve_model(meta["base_model"]), dtype=torch.float32,
                                              **_head(meta, tokenizer))
    return PeftModel.from_pretrained(base, str(src)).eval()


def _save(model: Any, tokenizer: Any, meta: dict[str, Any], out: Path) -> None:
    """safetensors + tokenizer (its chat template is the training one) + metadata + stop tokens."""
    eot_id = tokenizer.convert_tokens_to_ids(meta["eot"]) if meta.get("eot") else None
    eos = {i for i in (tokenizer.eos_token_id, eot_id) if isinstance(i, int)}
    if getattr(model, "can_generate", lambda: False)():  # a reward model has no generation config
        model.generation_config.eos_token_id = sorted(eos) if len(eos) > 1 else next(iter(eos), None)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "tuneforge_training.json").write_text(json.dumps({**meta, "exported_from": meta.get("base_model"),
                                                             "merged": bool(meta["adapter"])}, indent=2),
                                                 encoding="utf-8")
