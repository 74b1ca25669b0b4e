"""Processors: what is trained is exactly the assistant answers with their end-of-turn token (property tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge.data.processors.base import ProcessOptions, process_examples
from tuneforge.data.processors.sft import IGNORE
from tuneforge.data.records import Example, Message, Origin

ORIGIN = Origin("t", "t.json", 0)
# Letters, CJK, digits, punctuation, spaces and newlines; never the tokenizer's control strings.
ALPHABET = st.sampled_from(list("abcxyzABC 0123456789.,!?\n\t-_你好世界中文测试，。") + ["é", "ß", "😀"])
TEXT = st.text(ALPHABET, min_size=1, max_size=40)
CONVERSATIONS = st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _sft(pairs: list[tuple[str, str]], system: str = "") -> Example:
    msgs = [m for q, a in pairs for m in (Message("user", q), Message("assistant", a))]
    return Example("sft", ORIGIN, msgs, system=system)


def _opts(tokenizer: Any, template: Any, max_length: int = 4096, **kw: bool) -> ProcessOptions:
    return ProcessOptions(tokenizer, template, max_length, **kw)


def _trained_runs(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    prev = False
    for tok, lab in zip(input_ids, labels, strict=True):
        if lab != IGNORE:
            assert lab == tok
            if not prev:
                runs.append([])
            runs[-1].append(tok)
        prev = lab != IGNORE
    return runs


@SETTINGS
@given(pairs=CONVERSATIONS, system=st.one_of(st.just(""), TEXT))
def test_labels_are_exactly_the_answers_with_eot(tokenizer: Any, chat_template: Any,
                                                  pairs: list[tuple[str, str]], system: str) -> None:
    out = process_examples([_sft(pairs, system)], _opts(tokenizer, chat_template))
    ids, labels = out.columns["input_ids"][0], out.columns["labels"][0]
    dicts = [{"role": "system", "content": system}] if system else []
    dicts += [{"role": r, "content": c} for q, a in pairs for r, c in (("user", q), ("assistant", a))]
    whole = tokenizer.apply_chat_template(dicts, tokenize=False)
    assert tokenizer.decode(ids) == whole
    # The first prompt is tokenized exactly as chat tokenizes it at inference (the answer is not merged
    # into it: an answer starting with a space must not change the prompt's last token).
    gen = tokenizer.apply_chat_template(dicts[: len(dicts) - 2 * len(pairs) + 1], tokenize=False,
                                        add_generation_prompt=True)
    head = tokenizer(gen, add_special_tokens=False)["input_ids"]
    assert ids[: len(head)] == head and all(lab == IGNORE for lab in labels[: len(head)])
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    runs = _trained_runs(ids, labels)
    assert len(runs) == len(pairs)
    for run, (_, answer) in zip(runs, pairs, strict=True):
        assert run[-1] == eot  # the end-of-turn token of every answer is trained
        assert tokenizer.decode(run) == answer + "<|im_end|>"
    assert out.stats.truncated == 0 and out.stats.kept == 1


@SETTINGS
@given(pairs=CONVERSATIONS)
def test_mask_history_trains_only_the_last_answer(tokenizer: Any, chat_template: Any,
                                                   pairs: list[tuple[str, str]]) -> None:
    out = process_examples([_sft(pairs)], _opts(tokenizer, chat_template, mask_history=True))
    runs = _trained_runs(out.columns["input_ids"][0], out.columns["labels"][0])
    assert len(runs) == 1 and tokenizer.decode(runs[0]) == pairs[-1][1] + "<|im_end|>"


@SETTINGS
@given(pairs=CONVERSATIONS)
def test_train_on_prompt_trains_everything(tokenizer: Any, chat_template: Any, pairs: list[tuple[str, str]]) -> None:
    out = process_examples([_sft(pairs)], _opts(tokenizer, chat_template, train_on_prompt=True))
    assert out.columns["labels"][0] == out.columns["input_ids"][0]


@SETTINGS
@given(pairs=CONVERSATIONS, max_length=st.integers(min_value=16, max_value=120))
def test_truncation_keeps_whole_turns_and_is_counted(tokenizer: Any, chat_template: Any,
                                                      pairs: list[tuple[str, str]], max_length: int) -> None:
    full = process_examples([_sft(pairs)], _opts(tokenizer, chat_template))
    cut = process_examples([_sft(pairs)], _opts(tokenizer, chat_template, max_length=max_length))
    n = full.columns["length"][0]
    if n <= max_length:
        assert cut.columns["input_ids"] == full.columns["input_ids"] and cut.stats.truncated == 0
        return
    if cut.stats.kept == 0:  # nothing fits: dropped, and said so
        assert cut.stats.dropped == {"prompt longer than max_length": 1}
        return
    ids, labels = cut.columns["input_ids"][0], cut.columns["labels"][0]
    assert len(ids) <= max_length
    assert ids == full.columns["input_ids"][0][: len(ids)]  # a prefix: turns are cut from the end
    runs = _trained_runs(ids, labels)
    whole_runs = _trained_runs(full.columns["input_ids"][0], full.columns["labels"][0])
    if cut.stats.truncated == 0:  # only the untrained tail after the last answer ("\n") was left out
        assert runs == whole_runs and all(lab == IGNORE for lab in full.columns["labels"][0][len(ids):])
        return
    assert cut.stats.truncated == 1 and cut.stats.truncated_at == [0]
    assert runs  # something is always trained
    assert runs[:-1] == whole_runs[: len(runs) - 1]  # only the last kept answer may be cut
    assert whole_runs[len(runs) - 1][: len(runs[-1])] == runs[-1]


def test_sft_batch_keeps_order_and_counts(tokenizer: Any, chat_template: Any) -> None:
    examples = [_sft([(f"q{i}", f"answer {i}")]) for i in range(300)]  # more than one pipeline chunk
    out = process_examples(examples, _opts(tokenizer, chat_template))
    assert out.stats.kept == 300 and len(out.columns["length"]) == 300
    runs = [_trained_runs(i, lab)[0] for i, lab in zip(out.columns["input_ids"], out.columns["labels"], strict=True)]
    assert [tokenizer.decode(r) for r in runs[:3]] == [f"answer {i}<|im_end|>" for i in range(3)]
    assert tokenizer.decode(runs[299]) == "answer 299<|im_end|>"


@SETTINGS
@given(prompt=TEXT, chosen=TEXT, rejected=TEXT)
def test_pairwise_prompt_plus_answer_is_the_chat_rendering(tokenizer: Any, chat_template: Any, prompt: str,
                                                           chosen: str, rejected: str) -> None:
    ex = Example("pairwise", ORIGIN, [Message("user", prompt)], chosen=Message("assistant", chosen),
                 rejected=Message("assistant", rejected))
    out = process_examples([ex], _opts(tokenizer, chat_template))
    if chosen == rejected:
        assert out.stats.dropped == {"chosen equals rejected": 1}
        return
    p = out.columns["prompt_ids"][0]
    assert tokenizer.decode(p) == chat_template.prompt([Message("user", prompt)])
    assert tokenizer.decode(out.columns["chosen_ids"][0]) == chosen + "<|im_end|>"
    assert tokenizer.decode(out.columns["rejected_ids"][0]) == rejected + "<|im_end|>"


def test_unpaired_keeps_labels(tokenizer: Any, chat_template: Any) -> None:
    exs = [Example("unpaired", ORIGIN, [Message("user", "hi")], completion=Message("assistant", a), label=lab)
           for a, lab in (("hello", True), ("go away", False))]
    out = process_examples(exs, _opts(tokenizer, chat_template))
    assert out.columns["label"] == [True, False]
    assert tokenizer.decode(out.columns["completion_ids"][1]) == "go away<|im_end|>"


@SETTINGS
@given(docs=st.lists(TEXT, min_size=1, max_size=8), max_length=st.integers(min_value=16, max_value=64))
def test_pt_chunks_lose_nothing_and_mark_documents(tokenizer: Any, chat_template: Any, docs: list[str],
                                                   max_length: int) -> None:
    exs = [Example("pt", ORIGIN, text=d) for d in docs]
    out = process_examples(exs, _opts(tokenizer, chat_template, max_length=max_length))
    rows = out.columns["input_ids"]
    assert all(len(r) <= max_length for r in rows[:-1]) and all(len(r) == max_length for r in rows[:-1])
    assert [t for r in rows for t in r] == [t for d in docs for t in
                                           tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    assert all(sum(lens) == len(r) for lens, r in zip(out.columns["seq_lens"], rows, strict=True))
    assert out.columns["labels"] == rows


def test_mixed_kinds_are_refused(tokenizer: Any, chat_template: Any) -> None:
    import pytest

    with pytest.raises(ValueError, match="mix of example kinds"):
        process_examples([_sft([("a", "b")]), Example("pt", ORIGIN, text="x")], _opts(tokenizer, chat_template))
