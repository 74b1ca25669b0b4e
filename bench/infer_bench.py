"""Single-stream decoding speed of the default model: the paths ``tuneforge chat``/``serve`` could take.

Contenders (each greedy, batch 1, the same prompts rendered by the model's chat template):

- ``generate``: plain ``model.generate`` in eager mode with the default dynamic cache;
- ``engine``: tuneforge's ``Engine.stream`` (what ``chat`` and ``serve`` run: ``generate`` in a thread
  feeding a ``TextIteratorStreamer``);
- ``static``: ``generate`` with a static cache (``cache_implementation="static"``), not compiled;
- ``static+compile``: the same with transformers' automatic ``torch.compile`` of the decoding step, which
  it enables only on GPUs unless ``CompileConfig._compile_all_devices`` is set (done here on a CPU).

Each contender first answers one warm-up prompt (timed apart: that is where compilation happens), then
``--prompts`` prompts; ``--repeats`` rounds are interleaved and the median new tokens/s is reported. Every
contender's greedy answers are compared token for token with ``generate``'s. Ends with::

    tokens/s ratio <contender>/generate: <x>      (one line per contender)
    identical greedy answers: <contender>=<yes|no> ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about autumn leaves.",
    "Give three tips for learning a new language.",
    "What does a CPU do in a computer?",
    "How do plants make their food?",
]
WARMUP = "Say hello."
MAX_CACHE = 512  # the static cache's length: prompt + answer of every prompt here fit


def _greedy(engine: Any, max_new: int) -> dict[str, Any]:
    from tuneforge.inference.engine import GenerationOptions

    return {"eos_token_id": engine.stop_ids, "pad_token_id": engine.pad_id,
            **GenerationOptions(max_new_tokens=max_new, temperature=0.0, repetition_penalty=1.0).kwargs()}


def _plain(extra: Callable[[], dict[str, Any]]) -> Callable[[Any, str, int], list[int]]:
    """A contender that calls ``model.generate`` with ``extra()`` keyword arguments."""
    def run(engine: Any, prompt: str, max_new: int) -> list[int]:
        import torch

        from tuneforge.data.records import Message

        ids = torch.tensor([engine.prompt_ids([Message("user", prompt)])])
        with torch.inference_mode():
            out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                        **_greedy(engine, max_new), **extra())
        return out[0, ids.shape[1]:].tolist()

    return run


def _engine_stream(engine: Any, prompt: str, max_new: int) -> list[int]:
    from tuneforge.data.records import Message
    from tuneforge.inference.engine import GenerationOptions

    text = "".join(engine.stream([Message("user", prompt)],
                                 GenerationOptions(max_new_tokens=max_new, temperature=0.0, repetition_penalty=1.0)))
    return engine.tokenizer.encode(text, add_special_tokens=False)


def _compile_config() -> dict[str, Any]:
    from transformers import CompileConfig

    config = CompileConfig(fullgraph=False, dynamic=False, mode="default")
    config._compile_all_devices = True  # transformers compiles on GPUs only unless this is set
    return {"cache_implementation": "static", "compile_config": config,
            "cache_config": {"max_cache_len": MAX_CACHE}}


CONTENDERS: dict[str, Callable[[Any, str, int], list[int]]] = {
    "generate": _plain(dict),
    "engine": _engine_stream,
    "static": _plain(lambda: {"cache_implementation": "static", "disable_compile": True,
                              "cache_config": {"max_cache_len": MAX_CACHE}}),
    "static+compile": _plain(_compile_config),
}


def _round(name: str, engine: Any, prompts: list[str], max_new: int) -> tuple[float, list[list[int]]]:
    """New tokens/s over ``prompts`` and the answers' token ids."""
    answers, start = [], time.perf_counter()
    for prompt in prompts:
        answers.append(CONTENDERS[name](engine, prompt, max_new))
    seconds = time.perf_counter() - start
    return sum(map(len, answers)) / seconds, answers


def _same(a: list[list[int]], b: list[list[int]], engine: Any) -> bool:
    """Equal answers; the streamed contender is compared as text (it is decoded and re-encoded)."""
    decode = engine.tokenizer.decode
    return [decode(x, skip_special_tokens=True).strip() for x in a] == [decode(x, skip_special_tokens=True).strip()
                                                                         for x in b]


def main() -> None:
    import torch

    from tuneforge.inference.engine import Engine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--prompts", type=int, default=len(PROMPTS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    a = p.parse_args()
    names = ["generate"] + [n for n in a.contenders.split(",") if n in CONTENDERS and n != "generate"]
    engine = Engine.load("default")
    print(f"# SmolLM2-135M-Instruct, {engine.model.dtype}, {engine.model.device}, torch threads "
          f"{torch.get_num_threads()}, greedy, batch 1, up to {a.max_new_tokens} new tokens, "
          f"{a.prompts} prompts x {a.repeats} interleaved rounds, medians")
    warm = {}
    for name in list(names):
        start = time.perf_counter()
        try:
            CONTENDERS[name](engine, WARMUP, a.max_new_tokens)
        except Exception as err:  # a path this torch/CPU cannot run is a result too, not the end of the bench
            print(f"{name}: failed on the warm-up prompt: {type(err).__name__}: {str(err)[:300]}")
            names.remove(name)
            continue
        warm[name] = time.perf_counter() - start
    speeds: dict[str, list[float]] = {n: [] for n in names}
    answers: dict[str, list[list[int]]] = {}
    for _ in range(a.repeats):
        for name in names:
            tps, answers[name] = _round(name, engine, PROMPTS[: a.prompts], a.max_new_tokens)
            speeds[name].append(tps)
    for name in names:
        print(f"{name}: {statistics.median(speeds[name]):.1f} new tokens/s (rounds: "
              f"{', '.join(f'{s:.1f}' for s in speeds[name])}); first call {warm[name]:.1f} s; "
              f"{sum(map(len, answers[name]))} tokens")
    base = statistics.median(speeds["generate"])
    for name in names[1:]:
        print(f"tokens/s ratio {name}/generate: {statistics.median(speeds[name]) / base:.2f}")
    print("identical greedy answers: " + " ".join(
        f"{n}={'yes' if _same(answers[n], answers['generate'], engine) else 'no'}" for n in names[1:]))


if __name__ == "__main__":
    main()
