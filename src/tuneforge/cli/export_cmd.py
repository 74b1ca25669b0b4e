"""``tuneforge export RUN --out DIR [--format hf|gguf|awq|gptq]``."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from tuneforge.cli.common import console, handle_errors


@handle_errors
def export(run: str = typer.Argument(..., help="A finished run folder (or its model/ folder)."),
           out: str = typer.Option(..., "--out", help="Folder for the exported model."),
           fmt: str = typer.Option("hf", "--format", help="hf (merged transformers folder), gguf (llama.cpp / "
                                   "Ollama), awq or gptq (4-bit, need a CUDA GPU and their library)."),
           quant: str = typer.Option("f16", "--quant", help="gguf: f16 or q8_0 (q4_k_m: with llama.cpp's "
                                     "llama-quantize from the f16 file)."),
           overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder.")) -> None:
    """Merge the adapter into its base, save safetensors + tokenizer + chat template, and verify the result.

    Adapters that cannot be merged (prompt, ptuning, prefix, adapter) are exported as adapters, with the reason.
    --format gguf writes a GGUF file with the tokenizer and chat template embedded, and an Ollama Modelfile,
    and checks the file's answers against the merged model.
    """
    from tuneforge.export import export_gguf, export_run, refuse_weight_quantisation

    if fmt == "gguf":
        g = export_gguf(run, out, quant, overwrite)
        v, e = g.verification, g.exact
        console.print(f"[green]exported[/] {g.path} ({g.quant}) and {g.modelfile}")
        console.print(f"loaded back through transformers' GGUF loader; tokenizer and chat template equal: "
                      f"{g.tokenizer_equal}")
        console.print(f"  against the weights it stores: greedy answers equal on {e.greedy_equal}/{e.probes} "
                      f"probes, max |logit difference| {e.max_logit_diff:.2e}")
        console.print(f"  against the merged model ({g.quant} rounding): greedy answers equal on "
                      f"{v.greedy_equal}/{v.probes} probes, max |logit difference| {v.max_logit_diff:.2e}")
        n = g.llama_cpp
        if n and "crashed" in n:
            console.print(f"  [yellow]llama.cpp {n['version']}: {n['crashed']}[/]; not checked there")
            return
        console.print(f"  in llama.cpp {n['version']}: tokenizer equal: {n['tokenizer_equal']}, greedy answers equal "
                      f"on {n['greedy_equal']}/{n['probes']} probes, max |logit difference| {n['max_logit_diff']:.2e}, "
                      f"min cosine {n['min_cosine']:.5f}"
                      if n else "  llama.cpp: not run (pip install 'tuneforge[gguf]' builds llama-cpp-python)")
        return
    if fmt in ("awq", "gptq"):
        refuse_weight_quantisation(fmt)
    result = export_run(run, out, overwrite)
    v = result.verification
    if result.note:
        console.print(f"[yellow]note:[/] {result.note}")
    console.print(f"[green]exported[/]{' (adapter merged)' if result.merged else ''}: {result.out}")
    console.print(f"verified: greedy answers equal on {v.greedy_equal}/{v.probes} probes, "
                  f"max |logit difference| {v.max_logit_diff:.2e}")
    _print_vllm(result.vllm)


def _print_vllm(checks: list[Any]) -> None:
    """What vLLM reads, checked on the written folder (docs/export.md, "vLLM")."""
    from tuneforge.export.vllm import vllm_ready

    ready = vllm_ready(checks)
    console.print(f"vLLM: {'[green]loads unchanged[/]' if ready else '[red]would not load unchanged[/]'} "
                  f"({sum(c.ok for c in checks)}/{len(checks)} checks passed)")
    for c in checks:
        if not c.ok:
            console.print(f"  [{'yellow' if c.warning else 'red'}]{c.name}[/]: {escape(c.detail)}")
