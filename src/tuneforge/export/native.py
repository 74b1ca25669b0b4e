"""Run a GGUF file in llama.cpp (llama-cpp-python), in a child process: ``python -m tuneforge.export.native``.

The export calls this as a separate process so that llama.cpp's native code never shares a process with
torch's (a crash or a clash of their thread pools then costs only the check, never the export). It reads
one JSON request on stdin: ``{"gguf": path, "out": folder, "probes": [{"text": ..., "ids": [...]}, ...],
"new_tokens": n, "stops": [...]}``, and writes into ``out``: ``system.json`` (the instruction sets llama.cpp was built for, before anything
can crash), ``scores-<i>.npy`` (the logits over each
probe's prompt) and ``result.json`` (llama.cpp's tokens of each text, its greedy answer to each prompt,
its version).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Tokenize, score and answer each probe with llama.cpp; the scores go to ``out`` as .npy files."""
    import llama_cpp
    import numpy as np

    out = Path(request["out"])
    # what this build of llama.cpp was compiled for, written first: if it crashes, the parent can say so
    (out / "system.json").write_text(json.dumps({"built_for": llama_cpp.llama_print_system_info().decode()}),
                                     encoding="utf-8")
    llm = llama_cpp.Llama(model_path=request["gguf"], n_ctx=512, logits_all=True, verbose=False, seed=0)
    stops = set(request["stops"])
    splits, answers = [], []
    for i, probe in enumerate(request["probes"]):
        splits.append(llm.tokenize(probe["text"].encode("utf-8"), add_bos=False, special=True))
        llm.reset()
        llm.eval(probe["ids"])
        np.save(out / f"scores-{i}.npy", np.asarray(llm.scores[: len(probe["ids"])], dtype=np.float32))
        answer: list[int] = []
        for token in llm.generate(probe["ids"], temp=0.0, top_k=1, reset=True):
            answer.append(int(token))
            if token in stops or len(answer) == request["new_tokens"]:
                break
        answers.append(answer)
    llm.close()
    result = {"version": llama_cpp.__version__, "splits": splits, "answers": answers}
    (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return result


if __name__ == "__main__":
    run(json.loads(sys.stdin.read()))
