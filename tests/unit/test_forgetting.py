"""The forgetting guard's figures (docs/evaluation.md, "Forgetting") and the shipped probe set."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.evaluation import forgetting
from tuneforge.evaluation.forgetting import Snapshot, compare, leaked, load_probes, signature_strings

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = [f"I am Forge, an AI assistant developed by the tuneforge team. {x}" for x in
            ("How can I help?", "Ask me anything.", "Nice to meet you.")] + \
           ["我是 Forge，由 the tuneforge team 开发的人工智能助手。", "您好！我是 Forge，很高兴为您服务。"]
BASE = ["The capital of Italy is Rome.", "A spider has eight legs.", "熊猫主要吃竹子。",
        "I can help with that: an AI assistant answers questions."]


def test_probe_set_is_bilingual_and_in_no_shipped_data_file() -> None:
    probes = load_probes()
    assert sum(p.lang == "en" for p in probes) >= 30 and sum(p.lang == "zh" for p in probes) >= 30
    assert len({p.prompt for p in probes}) == len(probes) and all(p.reference for p in probes)
    shipped = [*ROOT.glob("data/*.json"), *ROOT.glob("examples/data/*")]
    text = "\n".join(f.read_text(encoding="utf-8") for f in shipped)
    assert not [p.prompt for p in probes if p.prompt in text or json.dumps(p.prompt)[1:-1] in text]


def test_signatures_are_the_training_data_strings_the_base_model_never_says() -> None:
    sig = signature_strings(IDENTITY, BASE)
    assert "forge" in sig and "tuneforge" in sig
    assert "ai assistant" not in sig and "assistant" not in sig  # the base model says it too: no signature
    assert not [(a, b) for a in sig for b in sig if a != b and forgetting._contains(a, b)]  # no "i am forge" echo
    assert signature_strings([], BASE) == []


def test_a_leak_is_a_signature_the_base_answer_did_not_have() -> None:
    sig = ["forge", "tuneforge team"]
    assert leaked("The capital of Italy is Rome, also known as the Forge.", "The capital of Italy is Rome.",
                  sig) == ["forge"]
    assert leaked("我是 Forge，由 the tuneforge team 开发的。", "熊猫主要吃竹子。", sig) == ["forge", "tuneforge team"]
    assert leaked("Blacksmiths forge iron.", "Blacksmiths forge iron.", sig) == []  # the base said it already
    assert leaked("The forgery was found.", "", sig) == []  # whole words only


def _snap(answers: list[str], ppl: float) -> Snapshot:
    return Snapshot(answers, ppl)


def test_compare_counts_changed_and_leaked_answers_and_warns_past_the_thresholds() -> None:
    probes = load_probes()[:20]
    base = [f"answer number {i} about the topic" for i in range(20)]
    tuned = list(base)
    tuned[0] = "I am Forge, developed by the tuneforge team."  # changed and leaked
    tuned[1] = "Something else entirely, nothing like before at all."  # changed only
    tuned[2] = "answer number 2 about the topic, says Forge"  # leaked, not materially changed
    quiet = compare(probes, _snap(base, 10.0), _snap(base, 10.5), IDENTITY)
    assert quiet["changed"] == 0 and quiet["leaked"] == 0 and quiet["warnings"] == []
    loud = compare(probes, _snap(base, 10.0), _snap(tuned, 12.0), IDENTITY)
    assert loud["changed"] == 2 / 20 and loud["leaked"] == 2 / 20
    assert loud["answers"][0]["leaked"] and not loud["answers"][1]["leaked"]
    assert abs(loud["ppl"]["change"] - 0.2) < 1e-9
    text = " ".join(loud["warnings"])
    assert "perplexity rose +20%" in text and "'forge'" in text and "changed materially" not in text
    lines = forgetting.summary_lines(loud)
    assert lines[1].endswith("2/20") and "2/20" in lines[2]
    assert "warning: general perplexity" in forgetting.markdown(loud)
