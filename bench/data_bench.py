"""SFT preprocessing throughput: tuneforge vs TRL's own SFT tokenisation, same data, same process.

For each of LLaMA-Factory's alpaca_en_demo.json and alpaca_zh_demo.json (from ../shared/fixtures, or
``--data FILE``) this measures, with the default model's tokenizer and chat template:

- tuneforge: parse records -> render with the template -> tokenize -> mask prompt tokens (load_data +
  process_examples, a fresh token cache every repeat);
- TRL: ``SFTTrainer._prepare_dataset`` on the same records as conversational prompt/completion pairs
  (``apply_chat_template`` per example, completion mask), i.e. what ``SFTTrainer`` does before training,
  with its default ``dataset_num_proc`` (one process).

Repeats of the two contenders are interleaved and medians are reported (the machine is noisy).
Output, one block per dataset::

    tuneforge: <N> examples/s
    TRL: <N> examples/s
    tuneforge/TRL ratio: <x>
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "llamafactory"
DEFAULT_FILES = [FIXTURES / "alpaca_en_demo.json", FIXTURES / "alpaca_zh_demo.json"]


def tuneforge_run(path: Path, tokenizer: Any, template: Any, max_length: int) -> int:
    """Read, parse, render, tokenize and mask every record; returns the number of examples kept."""
    from tuneforge.config.schema import DataConfig
    from tuneforge.data.loader import load_data
    from tuneforge.data.processors.base import ProcessOptions, process_examples

    data = load_data(DataConfig(datasets=[str(path)], max_length=max_length))
    out = process_examples(data.examples, ProcessOptions(tokenizer, template, max_length))
    return len(out)


def trl_records(path: Path) -> list[dict[str, Any]]:
    """The same records as TRL's conversational prompt/completion format (history folded in)."""
    import json

    rows = []
    for r in json.loads(path.read_text(encoding="utf-8")):
        user = r["instruction"] + ("\n" + r["input"] if r.get("input") else "")
        rows.append({"prompt": [{"role": "user", "content": user}],
                     "completion": [{"role": "assistant", "content": r["output"]}]})
    return rows


def trl_run(path: Path, tokenizer: Any, max_length: int, workdir: str) -> int:
    """TRL's own SFT preparation (tokenize prompt/completion with the chat template, completion mask)."""
    from datasets import Dataset, disable_caching
    from trl import SFTConfig, SFTTrainer

    disable_caching()  # every repeat tokenizes for real
    dataset = Dataset.from_list(trl_records(path))  # reading JSON is part of the job, as for tuneforge
    args = SFTConfig(output_dir=workdir, max_length=max_length, report_to=[], bf16=False, use_cpu=True)
    fake_self = SimpleNamespace(_tokenizer=tokenizer, chat_template=None, completion_only_loss=True,
                                padding_free=False, args=args)
    out = SFTTrainer._prepare_dataset(fake_self, dataset, tokenizer, args, False, None, "train")
    return len(out)


def measure(fn: Any) -> tuple[float, int]:
    """Wall time of one call and what it returned."""
    start = time.perf_counter()
    n = fn()
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", type=Path, default=DEFAULT_FILES, help="alpaca JSON files")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)

    from tuneforge.data.templates import resolve_template
    from tuneforge.models.loading import load_tokenizer

    tokenizer = load_tokenizer("default")
    template = resolve_template("auto", tokenizer)
    with tempfile.TemporaryDirectory() as workdir:
        for path in args.data:
            if not path.is_file():
                print(f"# {path} not found (the fixtures live in ../shared); skipped")
                continue
            ours, theirs = [], []
            n_ours = n_theirs = 0
            tuneforge_run(path, tokenizer, template, args.max_length)  # warm-up: imports, jinja compile
            trl_run(path, tokenizer, args.max_length, workdir)
            for _ in range(args.repeats):  # interleaved: both see the same machine load
                t, n_ours = measure(lambda p=path: tuneforge_run(p, tokenizer, template, args.max_length))
                ours.append(t)
                t, n_theirs = measure(lambda p=path: trl_run(p, tokenizer, args.max_length, workdir))
                theirs.append(t)
            ours_rate = n_ours / statistics.median(ours)
            trl_rate = n_theirs / statistics.median(theirs)
            print(f"# {path.name}: {n_ours} examples, {args.repeats} interleaved repeats, medians; "
                  f"spread tuneforge {min(ours):.3f}-{max(ours):.3f} s, TRL {min(theirs):.3f}-{max(theirs):.3f} s")
            print(f"tuneforge: {ours_rate:.0f} examples/s")
            print(f"TRL: {trl_rate:.0f} examples/s")
            print(f"tuneforge/TRL ratio: {ours_rate / trl_rate:.2f}")


if __name__ == "__main__":
    main()
