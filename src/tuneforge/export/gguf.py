"""``tuneforge export RUN --format gguf``: a GGUF file for llama.cpp and Ollama, written with the gguf package.

The run is first exported as a merged transformers folder (``merge.export_run``, verified against the
run). Its tensors are renamed with gguf's own name map for the architecture, the query and key
projections of Llama-family models are permuted to llama.cpp's rotary layout, and the tokenizer (its
tokens, token types, merges, special ids) and the training chat template are embedded. The file is
then loaded back through transformers' GGUF loader and compared twice (docs/export.md, "GGUF"): with the
merged model holding exactly the weights the file stores (f16- or q8_0-rounded), which must answer the
same, so any fault of writing (a name, a permutation, a hyper-parameter, the tokenizer) fails the export;
and with the merged model itself, which measures what the rounding costs. Where llama-cpp-python is
installed (``pip install tuneforge[gguf]``; it builds llama.cpp from source) the file is also run by
llama.cpp itself, the engine Ollama and LM Studio use: its tokenizer must split the probes as the run's
does and its logits must match the stored weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.export.merge import ExportError, export_run
from tuneforge.export.verify import Verification, compare
from tuneforge.utils.errors import Problem

#: --quant values the gguf package can write, and the GGUF file type each declares.
QUANTS = {"f16": 1, "q8_0": 7}
#: Largest logit difference accepted between the f16 file and the merged model (f16 rounding of the weights).
F16_MAX_LOGIT_DIFF = 0.15
#: Largest logit difference accepted between the file and the merged model rounded as the file stores it:
#: the same weights, so only the order of float operations differs.
EXACT_MAX_LOGIT_DIFF = 1e-3
#: Smallest cosine similarity accepted between llama.cpp's logits at a prompt position and those of the merged
#: model holding the file's weights. llama.cpp rounds the activations too (to f16, or to 8 bits against q8_0
#: weights: on the default model its logits then move by up to 1.7), so an absolute limit would fail sound
#: q8_0 files; a wrongly written tensor leaves logits that are unrelated, far below this.
LLAMA_CPP_MIN_COSINE = 0.99


@dataclass(frozen=True)
class GgufArch:
    """How one transformers architecture is written: gguf's architecture and whether q/k are permuted."""

    gguf_name: str
    permute_qk: bool


#: transformers model_type -> GGUF architecture (llama.cpp's names; Mistral is written as llama).
ARCHITECTURES = {"llama": GgufArch("llama", True), "mistral": GgufArch("llama", True),
                 "qwen2": GgufArch("qwen2", False), "qwen3": GgufArch("qwen3", False)}
#: The head size transformers' GGUF loader assumes for qwen3 (it reads no key_length): other sizes cannot be
#: verified here.
QWEN3_LOADER_HEAD_DIM = 128
#: llama.cpp's pre-tokenizer names, by the tokenizer's first special token: they select the regex llama.cpp
#: splits text with before BPE; "default" where none is known.
PRE_TOKENIZERS = {"<|endoftext|>": "smollm", "<|begin_of_text|>": "llama-bpe"}


@dataclass
class GgufResult:
    """The written file, the Modelfile beside it and how the file answered against the merged model."""

    path: Path
    modelfile: Path
    quant: str
    verification: Verification  # against the merged model: what the rounding costs
    exact: Verification  # against the merged model holding the file's rounded weights: must be equal
    tokenizer_equal: bool
    llama_cpp: dict[str, Any] | None = None  # llama.cpp running the file, where llama-cpp-python is installed


def export_gguf(run: str, out: str, quant: str = "f16", overwrite: bool = False) -> GgufResult:
    """Write ``<out>/<name>-<quant>.gguf`` and an Ollama ``Modelfile``, then load the file back and verify it.

    Raises:
        ExportError: an unknown or unsupported quantisation, an architecture without a GGUF mapping, an
            adapter that cannot be merged, an existing ``out`` without ``overwrite``, or (f16) answers that
            differ from the merged model.
    """
    target = Path(out)
    _check_request(quant, target, overwrite)
    with tempfile.TemporaryDirectory(prefix="tuneforge-gguf-") as work:
        merged = export_run(run, str(Path(work) / "merged")).out
        from transformers import AutoModelForCausalLM

        from tuneforge.models.loading import load_tokenizer

        model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
        tokenizer = load_tokenizer(str(merged))
        arch = _arch(model)
        staged = Path(work) / "out"
        staged.mkdir()
        path = staged / f"{Path(run).resolve().name}-{quant}.gguf"
        meta = json.loads((merged / "tuneforge_training.json").read_text(encoding="utf-8"))
        _write(model, tokenizer, merged, arch, quant, path, Path(run).resolve().name, meta)
        modelfile = _modelfile(staged, path.name, tokenizer, meta)
        system = meta.get("system")  # the probes are asked as chat asks them: with the trained system prompt
        exact, verification, same_tokens = _verify(path, model, tokenizer, quant, system)
        native = _llama_cpp(path, _round_as_stored(model, quant), tokenizer, system)
        report = {**_report(quant, exact, verification, same_tokens), "llama_cpp": native}
        (staged / f"{path.stem}.verification.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        _check_verified(run, quant, exact, verification, same_tokens)
        _check_llama_cpp(run, native)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), target)
    return GgufResult(target / path.name, target / modelfile.name, quant, verification, exact, same_tokens, native)


def _report(quant: str, exact: Verification, run: Verification, same_tokens: bool) -> dict[str, Any]:
    """What was compared and how it came out (written beside the file)."""
    def part(v: Verification) -> dict[str, Any]:
        return {"probes": v.probes, "greedy_equal": v.greedy_equal, "max_logit_diff": v.max_logit_diff,
                "mismatches": v.mismatches}

    return {"quant": quant, "loaded_with": "transformers' GGUF loader (de-quantised to fp32)",
            "tokenizer_equal": same_tokens, "against_stored_weights": part(exact), "against_merged_model": part(run)}


def _check_verified(run: str, quant: str, exact: Verification, merged: Verification, same_tokens: bool) -> None:
    """The file must hold what was meant (tokenizer, template, exact answers); f16 must also stay close."""
    problems = []
    if not same_tokens:
        problems.append(Problem("the file's tokenizer or chat template differs from the run's", file=str(run),
                                fix="report this with the run's config; the run is unchanged"))
    if not exact.ok or exact.max_logit_diff > EXACT_MAX_LOGIT_DIFF:
        problems.append(Problem(
            f"against the weights it stores, greedy answers equal on {exact.greedy_equal}/{exact.probes} probes, "
            f"max logit difference {exact.max_logit_diff:.2e}: the file was written wrongly", file=str(run),
            fix="report this with the run's config; the run is unchanged"))
    if quant == "f16" and merged.max_logit_diff > F16_MAX_LOGIT_DIFF:
        problems.append(Problem(
            f"f16 rounding moves a logit by {merged.max_logit_diff:.3f} (limit {F16_MAX_LOGIT_DIFF})", file=str(run),
            fix="weights outside f16's range: export --format hf and convert to a bf16 GGUF with llama.cpp"))
    if problems:
        raise ExportError("the GGUF file does not answer like the run", problems)

def _check_request(quant: str, target: Path, overwrite: bool) -> None:
    if quant == "q4_k_m":
        raise ExportError("q4_k_m cannot be written here", [Problem(
            "the gguf package writes F16, Q8_0 and the legacy 4/5-bit types but implements no K-quant "
            "quantiser (Q4_K_M is llama.cpp's)", field="--quant",
            fix="export --quant f16, then run llama.cpp's `llama-quantize <name>-f16.gguf <name>-q4_k_m.gguf Q4_K_M`")])
    if quant not in QUANTS:
        raise ExportError("unknown GGUF quantisation", [Problem(
            f"--quant {quant!r}", field="--quant", fix=f"use one of: {', '.join(QUANTS)} (or q4_k_m via llama.cpp)")])
    if target.exists() and not overwrite:
        raise ExportError("output exists", [Problem("refusing to overwrite", file=str(target),
                                                    fix="pass --overwrite or choose another --out")])


def _arch(model: Any) -> GgufArch:
    model_type = model.config.model_type
    if model_type not in ARCHITECTURES:
        raise ExportError("no GGUF mapping for this architecture", [Problem(
            f"{type(model).__name__} (model_type {model_type!r}) is not one of {', '.join(ARCHITECTURES)}",
            field="--format", fix="export --format hf and convert with llama.cpp's convert_hf_to_gguf.py")])
    head_dim = getattr(model.config, "head_dim", None)
    if model_type == "qwen3" and head_dim != QWEN3_LOADER_HEAD_DIM:
        raise ExportError("this qwen3 file could not be verified", [Problem(
            f"head_dim is {head_dim}; transformers' GGUF loader, which checks the file, reads every qwen3 GGUF "
            f"with head_dim {QWEN3_LOADER_HEAD_DIM} (that of every released Qwen3)", field="--format",
            fix="export --format hf and convert with llama.cpp's convert_hf_to_gguf.py")])
    return ARCHITECTURES[model_type]


def _write(model: Any, tokenizer: Any, folder: Path, arch: GgufArch, quant: str, path: Path, name: str,
           meta: dict[str, Any] | None = None) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch.gguf_name)
    writer.add_name(name)
    _add_hparams(writer, model.config, quant)
    _add_tokenizer(writer, tokenizer, folder)
    _add_system(writer, meta or {})
    for name, data in _tensors(model, arch):
        if _stored_as(data, quant) == "q8_0":
            writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data.astype(_stored_as(data, quant)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _stored_as(data: np.ndarray, quant: str) -> str:
    """How one weight is stored: matrices as ``quant`` (q8_0 only where rows split into its 32-value blocks,
    else f16); norms and biases stay fp32, as llama.cpp's converter writes them."""
    if data.ndim != 2:
        return "float32"
    return "q8_0" if quant == "q8_0" and data.shape[-1] % 32 == 0 else "float16"


def _round_as_stored(model: Any, quant: str) -> Any:
    """A copy of ``model`` whose weights are exactly what the file holds, de-quantised to fp32.

    Rounding is per element (f16) or per 32-value block along a row (q8_0); the q/k permutation moves whole
    rows, so rounding before or after it gives the same values.
    """
    import copy

    import gguf

    held = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in held.state_dict().values():  # tied weights share storage: rounding twice changes nothing
            data = tensor.detach().float().cpu().numpy()
            kind = _stored_as(data, quant)
            if kind == "q8_0":
                q8 = gguf.GGMLQuantizationType.Q8_0
                data = gguf.quants.dequantize(gguf.quants.quantize(data, q8), q8)
            else:
                data = data.astype(kind).astype(np.float32)
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(data)))
    return held


def _add_hparams(writer: Any, cfg: Any, quant: str) -> None:
    import gguf

    heads = cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(cfg, "num_key_value_heads", None) or heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta") or getattr(cfg, "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)  # llama.cpp reads the head size here where it is not hidden / heads (qwen3)
    writer.add_value_length(head_dim)
    writer.add_file_type(QUANTS[quant])
    if quant != "f16":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tokenizer(writer: Any, tokenizer: Any, folder: Path) -> None:
    """Byte-level BPE tokens with their types, merges, special ids and the training chat template."""
    import gguf

    if tokenizer.backend_tokenizer.model.__class__.__name__ != "BPE":
        raise ExportError("only byte-level BPE tokenizers are written to GGUF here", [Problem(
            f"the tokenizer model is {tokenizer.backend_tokenizer.model.__class__.__name__}", field="--format",
            fix="export --format hf and convert with llama.cpp's convert_hf_to_gguf.py")])
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    n = len(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZERS.get(tokenizer.convert_ids_to_tokens(0), "default"))
    writer.add_token_list(tokenizer.convert_ids_to_tokens(list(range(n))))
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(n)])
    vocab = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n)
    vocab.chat_template = None  # the training template is added below, from the tokenizer that trained
    vocab.add_to_gguf(writer)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)


def _add_system(writer: Any, meta: dict[str, Any]) -> None:
    """The run's training system prompt, for ``tuneforge chat FILE.gguf`` (Ollama reads the Modelfile's)."""
    from tuneforge.models.loading import GGUF_SYSTEM_KEY

    if meta.get("system"):
        writer.add_string(GGUF_SYSTEM_KEY, meta["system"])


def _tensors(model: Any, arch: GgufArch) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, fp32 array) of every weight; a tied output layer is the embedding and is not repeated."""
    import gguf

    cfg = model.config
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_name.upper()], cfg.num_hidden_layers)
    heads, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError("a weight has no GGUF name", [Problem(
                f"{hf_name} of {type(model).__name__}", field="--format",
                fix="export --format hf and convert with llama.cpp's convert_hf_to_gguf.py")])
        data = tensor.detach().float().cpu().numpy()
        if arch.permute_qk and hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads, heads)
        elif arch.permute_qk and hf_name.endswith("k_proj.weight"):
            data = _permute(data, heads, kv)
        yield name, data


def _permute(weights: np.ndarray, heads: int, kv_heads: int) -> np.ndarray:
    """HF's rotary layout (halves) -> llama.cpp's (interleaved pairs), per head (llama.cpp's converter does
    the same; transformers' GGUF loader undoes it)."""
    n = kv_heads if kv_heads != heads else heads
    return weights.reshape(n, 2, weights.shape[0] // n // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _modelfile(folder: Path, gguf_name: str, tokenizer: Any, meta: dict[str, Any]) -> Path:
    """An Ollama Modelfile: the file, the stop tokens, and for ChatML models the template in Ollama's syntax
    (for other formats Ollama reads the chat template embedded in the GGUF)."""
    lines = [f"FROM ./{gguf_name}"]
    if meta.get("eot") == "<|im_end|>":
        lines += ['TEMPLATE """{{- if .System }}<|im_start|>system', "{{ .System }}<|im_end|>",
                  "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}", "{{ .Content }}<|im_end|>",
                  '{{ end }}<|im_start|>assistant', '"""']
    for stop in dict.fromkeys(t for t in (meta.get("eot"), tokenizer.eos_token) if t):
        lines.append(f'PARAMETER stop "{stop}"')
    if meta.get("system"):
        lines.append(f'SYSTEM """{meta["system"]}"""')
    path = folder / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _verify(path: Path, model: Any, tokenizer: Any, quant: str,
            system: str | None = None) -> tuple[Verification, Verification, bool]:
    """Load the file with transformers' GGUF loader; compare its logits and greedy answers with ``model``
    rounded as stored, then with ``model``; and the file's tokenizer (ids of the probe prompts, chat
    template) with the trained one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.data.templates import resolve_template

    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    theirs = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    template = resolve_template("auto", tokenizer, system)
    probes = PROBES
    same = theirs.chat_template == tokenizer.chat_template and all(
        theirs(p, add_special_tokens=False)["input_ids"] == tokenizer(p, add_special_tokens=False)["input_ids"]
        for p in probes + [template.prompt(_probe_messages(p)) for p in probes])
    exact = compare(_round_as_stored(model, quant), loaded, tokenizer, template, prompts=probes)
    return exact, compare(model, loaded, tokenizer, template, prompts=probes), same


PROBES = ["What is the capital of France?", "Write one sentence about the sea.", "2 + 3 = ?"]


def _llama_cpp(path: Path, held: Any, tokenizer: Any, system: str | None = None,
               new_tokens: int = 24) -> dict[str, Any] | None:
    """Run the file in llama.cpp (``export/native.py``, a child process) on the probes: its tokens of each
    rendered probe, its logits over the prompt and its greedy answer, against ``held`` (the merged model with
    the file's weights). None where llama-cpp-python is not installed.

    Raises:
        ExportError: llama.cpp crashed or failed on the file.
    """
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from tuneforge.data.templates import resolve_template
    from tuneforge.export.verify import greedy_tokens

    template = resolve_template("auto", tokenizer, system)
    texts = [template.prompt(_probe_messages(p)) for p in PROBES]
    probes = [{"text": t, "ids": tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
    eos = held.generation_config.eos_token_id
    with tempfile.TemporaryDirectory(prefix="tuneforge-llama-cpp-") as work:
        request = {"gguf": str(path), "out": work, "probes": probes, "new_tokens": new_tokens,
                   "stops": eos if isinstance(eos, list) else [eos]}
        done = subprocess.run([sys.executable, "-m", "tuneforge.export.native"], input=json.dumps(request),
                              capture_output=True, text=True, check=False)
        if done.returncode < 0:  # killed by a signal: llama.cpp's own fault (it crashes so on files its converter
            # wrote too, on some CPUs), not evidence against the file, which the exact comparison has checked
            from importlib.metadata import version

            system = Path(work) / "system.json"
            built_for = json.loads(system.read_text(encoding="utf-8"))["built_for"] if system.exists() else None
            return {"version": version("llama-cpp-python"), "probes": len(probes), "built_for": built_for,
                    "cpu": _cpu_features(),
                    "crashed": f"llama.cpp stopped with signal {-done.returncode} on this CPU"}
        if done.returncode != 0:
            raise ExportError("llama.cpp could not run the GGUF file", [Problem(
                f"exit code {done.returncode}: {done.stderr.strip()[-500:]}", file=str(path),
                fix="report this with the run's config; uninstall llama-cpp-python to skip this check")])
        result = json.loads((Path(work) / "result.json").read_text(encoding="utf-8"))
        scores = [np.load(Path(work) / f"scores-{i}.npy") for i in range(len(probes))]
    worst, cosine, greedy_equal, mismatches = 0.0, 1.0, 0, []
    for probe, score, theirs, text in zip(probes, scores, result["answers"], PROBES, strict=True):
        ids = torch.tensor([probe["ids"]])
        with torch.inference_mode():
            reference = held(input_ids=ids).logits[0].float().numpy()
        worst = max(worst, float(np.abs(score - reference).max()))
        norms = np.linalg.norm(score, axis=1) * np.linalg.norm(reference, axis=1)
        cosine = min(cosine, float(((score * reference).sum(axis=1) / np.maximum(norms, 1e-12)).min()))
        ours = greedy_tokens(held, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, tokenizer, new_tokens)
        greedy_equal += int(theirs == ours)
        if theirs != ours:
            mismatches.append(f"{text!r}: {tokenizer.decode(ours)!r} vs llama.cpp {tokenizer.decode(theirs)!r}")
    split_equal = all(s == p["ids"] for s, p in zip(result["splits"], probes, strict=True))
    return {"version": result["version"], "probes": len(probes), "tokenizer_equal": split_equal,
            "max_logit_diff": worst, "min_cosine": cosine, "greedy_equal": greedy_equal, "mismatches": mismatches}


def _cpu_features() -> str:
    """The instruction sets this CPU reports that llama.cpp's kernels use, for a crash report (a build for
    instructions the CPU lacks dies with SIGILL)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo flags)"
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_tile")
    present = set(flags.split(":", 1)[1].split())
    return " ".join(f"{w}={int(w in present)}" for w in wanted)


def _check_llama_cpp(run: str, native: dict[str, Any] | None) -> None:
    """llama.cpp must split text as the run's tokenizer does and compute (up to its own rounding of the
    activations) the stored weights' logits."""
    if native is None or "crashed" in native:
        return
    problems = []
    if not native["tokenizer_equal"]:
        problems.append(Problem("llama.cpp splits the rendered probes into other tokens than the run's tokenizer "
                                "(its pre-tokenizer for this vocabulary differs)", file=str(run),
                                fix="export --format hf and convert with llama.cpp's convert_hf_to_gguf.py, which "
                                    "names the pre-tokenizer by hashing the tokenizer's output"))
    if native["min_cosine"] < LLAMA_CPP_MIN_COSINE:
        problems.append(Problem(f"llama.cpp's logits are not those of the stored weights: cosine similarity down to "
                                f"{native['min_cosine']:.4f} (limit {LLAMA_CPP_MIN_COSINE}), largest difference "
                                f"{native['max_logit_diff']:.3f}", file=str(run),
                                fix="report this with the run's config; the run is unchanged"))
    if problems:
        raise ExportError("llama.cpp does not run the GGUF file as the run", problems)


def _probe_messages(text: str) -> list[Any]:
    from tuneforge.data.records import Message

    return [Message("user", text)]
