"""``tuneforge export RUN --out DIR``: a plain transformers folder that answers exactly like the run."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneforge.data.templates import resolve_template
from tuneforge.export.verify import Verification, compare
from tuneforge.models.classifier import HEADS as CLASSIFIER_HEADS
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
    note: str = ""  # why an adapter was exported unmerged
    vllm: list[Any] = field(default_factory=list)  # vllm.Check: what vLLM reads, checked on the written folder


def export_run(run: str, out: str, overwrite: bool = False, threshold: float = MAX_LOGIT_DIFF) -> ExportResult:
    """Merge (if an adapter), save with tokenizer + training chat template + metadata, reload and verify.

    An adapter whose method cannot be merged (virtual tokens, bottleneck adapters) is exported as an adapter
    folder, with :attr:`ExportResult.note` saying why, and verified the same way on its base.

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
    blocker = _merge_blocker(meta)
    if blocker:
        return _export_adapter(src, target, meta, blocker, threshold)
    tokenizer = load_tokenizer(str(src))
    reference = _reference(src, meta)
    merged = reference.merge_and_unload() if meta["adapter"] else reference
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save(merged, tokenizer, meta, tmp)
    candidate = _model_class(meta).from_pretrained(tmp, dtype=torch.float32, **_head(meta, tokenizer)).eval()
    reference = _reference(src, meta)  # merge_and_unload modified the first one in place
    result = compare(reference, candidate, tokenizer, _probe_template(tokenizer), generate=_generates(meta))
    if not result.ok or result.max_logit_diff > threshold:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError("the exported model does not answer like the trained one", [Problem(
            f"max logit difference {result.max_logit_diff:.2e} (limit {threshold:.0e}); greedy answers equal on "
            f"{result.greedy_equal}/{result.probes} probes; " + "; ".join(result.mismatches[:2]), file=str(src),
            fix="report this; the adapter itself is unchanged and still usable")])
    _replace(tmp, target)
    return ExportResult(target, bool(meta["adapter"]), result, vllm=_vllm(target, meta))


def _merge_blocker(meta: dict[str, Any]) -> str:
    """Why the run's adapter cannot be folded into its base (``MethodSpec.merge_blocker``); "" where it can."""
    from tuneforge.config.catalog import METHOD_NAMES, method_spec

    name = meta.get("method")
    return method_spec(name).merge_blocker if meta["adapter"] and name in METHOD_NAMES else ""


def _export_adapter(src: Path, target: Path, meta: dict[str, Any], blocker: str, threshold: float) -> ExportResult:
    """A method that cannot merge: the adapter (with tokenizer and metadata) is exported as it is, then loaded
    back on its base and checked against the run as a merged export is."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    note = (f"method {meta['method']} cannot be merged into the base: {blocker}. Exported the adapter; load it "
            f"on its base {meta['base_model']} (tuneforge chat/eval read it as it is)")
    (tmp / "tuneforge_training.json").write_text(json.dumps({**meta, "exported_from": meta.get("base_model"),
                                                             "merged": False, "not_merged_because": blocker},
                                                            indent=2), encoding="utf-8")
    tokenizer = load_tokenizer(str(tmp))
    result = compare(_reference(src, meta), _reference(tmp, meta), tokenizer, _probe_template(tokenizer),
                     generate=_generates(meta))
    if not result.ok or result.max_logit_diff > threshold:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError("the exported adapter does not answer like the run", [Problem(
            f"max logit difference {result.max_logit_diff:.2e}; " + "; ".join(result.mismatches[:2]), file=str(src),
            fix="report this; the run's adapter is unchanged")])
    _replace(tmp, target)
    return ExportResult(target, False, result, note, _vllm(target, meta))


def _vllm(folder: Path, meta: dict[str, Any]) -> list[Any]:
    from tuneforge.export.vllm import vllm_checks

    return vllm_checks(folder, meta.get("max_length"))


def _replace(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


#: Stages whose result scores or labels rather than generates, and the auto class of their head.
HEADS = {"rm": "AutoModelForSequenceClassification", **CLASSIFIER_HEADS}


def _generates(meta: dict[str, Any]) -> bool:
    """Whether the result generates text (compared on greedy answers); a scorer is compared on its logits."""
    return meta.get("stage") not in HEADS


def _probe_template(tokenizer: Any) -> Any:
    """How the probes are rendered: the saved chat template, or ChatML for a tokenizer without one (a
    classifier's BERT tokenizer: the probes only need to be the same text for both models)."""
    from tuneforge.utils.errors import ConfigError

    try:
        return resolve_template("auto", tokenizer)
    except ConfigError:
        return resolve_template("chatml", tokenizer)


def _model_class(meta: dict[str, Any]) -> Any:
    """A reward model or classifier keeps its head; every other stage is a causal LM."""
    import transformers

    return getattr(transformers, HEADS.get(meta.get("stage", ""), "AutoModelForCausalLM"))


def _head(meta: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """Loading keywords of a head: a reward model's one output or a classifier's labels, padded as in
    training (a decoder's head reads the last real token)."""
    from tuneforge.models.classifier import head_kwargs

    stage = meta.get("stage")
    if stage == "rm":
        return {"num_labels": 1, "pad_token_id": tokenizer.pad_token_id}
    if stage in HEADS:
        return {**head_kwargs(meta["labels"]), "pad_token_id": tokenizer.pad_token_id}
    return {}


def _reference(src: Path, meta: dict[str, Any]) -> Any:
    """The trained model as training left it: base (de-quantised: loaded in fp32) + adapter, or the full model."""
    tokenizer = load_tokenizer(str(src))
    if not meta["adapter"]:
        return _model_class(meta).from_pretrained(src, dtype=torch.float32, **_head(meta, tokenizer)).eval()
    from tuneforge.models.loading import peft_model_class

    base = _model_class(meta).from_pretrained(resolve_model(meta["base_model"]), dtype=torch.float32,
                                              **_head(meta, tokenizer))
    return peft_model_class().from_pretrained(base, str(src)).eval()


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
