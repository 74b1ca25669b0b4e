"""The forgetting guard (docs/evaluation.md, "Forgetting"): what a run did to the model's general behaviour.

Before training the base model answers a shipped bilingual probe set (general questions found in no
training or replay file of ours) and its perplexity on the probes' reference answers is measured; after
training the tuned model does the same. The comparison gives three figures:

- general perplexity before and after;
- the share of probe answers that changed materially (similarity of their openings below :data:`CHANGED_BELOW`);
- the share of probe answers that picked up a *signature string*: a word or phrase frequent in the training
  answers that the base model never used in its probe answers (a taught name leaking into "the capital of
  Italy is Rome, also known as Forge"). Signature strings are found from the data, not configured.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from tuneforge.data.records import MODEL_ROLES, Example, Message, Origin

PROBES = Path(__file__).with_name("probes") / "general.json"
#: Greedy answer length of the probes: long enough to see a drift, short enough to cost seconds.
MAX_NEW_TOKENS = 64
#: Character similarity (difflib ratio) below which a tuned answer counts as materially changed.
CHANGED_BELOW = 0.5
#: Characters of each answer's opening that similarity compares.
SIMILARITY_CHARS = 200
#: A signature string appears in at least this share of the training answers...
SIGNATURE_MIN_SHARE = 0.1
#: ...and in none of the base model's probe answers. At most this many are kept (the most frequent).
SIGNATURE_MAX = 20
#: Warn past these (docs/evaluation.md): relative perplexity rise, share changed, share leaked.
WARN_PPL_RISE, WARN_CHANGED, WARN_LEAKED = 0.10, 0.30, 0.05
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+")
_CJK = re.compile(r"[\u3400-\u9fff]")
#: Words too common to be a signature on their own (a phrase containing one other word still can be).
_STOP = frozenset("""a an the and or but of to in on at for with by from as is are was were be been am i you he she
it we they me my your our their this that these those not no yes do does did can could will would should may might
have has had so if then than there here what which who how why when where all any some more most very just also
about into over after before up down out s t""".split())


@dataclass(frozen=True)
class Probe:
    """One general question with a short reference answer (for perplexity)."""

    lang: str
    prompt: str
    reference: str


@dataclass
class Snapshot:
    """One model's side of the guard: its greedy probe answers and perplexity on the references."""

    answers: list[str]
    ppl: float


def load_probes(path: Path = PROBES) -> list[Probe]:
    """The shipped probe set (30 English and 30 Chinese questions)."""
    return [Probe(**r) for r in json.loads(path.read_text(encoding="utf-8"))]


def snapshot(engine: Any, probes: list[Probe], max_new_tokens: int = MAX_NEW_TOKENS) -> Snapshot:
    """Greedy answers of ``engine`` to the probes and its perplexity on their reference answers."""
    from tuneforge.evaluation.perplexity import answer_perplexity
    from tuneforge.inference.engine import GenerationOptions

    options = GenerationOptions(max_new_tokens, temperature=0.0, repetition_penalty=1.1)
    answers = engine.generate_batch([[Message("user", p.prompt)] for p in probes], options)
    examples = [Example("sft", Origin("probes", str(PROBES), i), [Message("user", p.prompt),
                                                                   Message("assistant", p.reference)])
                for i, p in enumerate(probes)]
    return Snapshot(answers, answer_perplexity(engine.model, engine.tokenizer, engine.template, examples))


def trained_answers(examples: Iterable[Example]) -> list[str]:
    """The texts training pushes the model towards: SFT answers, chosen answers, desirable completions."""
    out = []
    for ex in examples:
        if ex.kind == "sft":
            out.append("\n".join(m.content for m in ex.messages if m.role in MODEL_ROLES))
        elif ex.kind == "pairwise" and ex.chosen is not None:
            out.append(ex.chosen.content)
        elif ex.kind == "unpaired" and ex.label and ex.completion is not None:
            out.append(ex.completion.content)
        elif ex.kind == "pt":
            out.append(ex.text)
    return [a for a in out if a.strip()]


def phrases(text: str) -> set[str]:
    """Candidate strings of a text: English words and 2-3 word phrases (lower case), Chinese words of jieba
    (two characters or more) and pairs of them. Single stop words and single digits are not candidates."""
    import jieba

    out: set[str] = set()
    words = [w.lower() for w in _WORD.findall(text)]
    for n in (1, 2, 3):
        for i in range(len(words) - n + 1):
            gram = words[i: i + n]
            if sum(w not in _STOP and not w.isdigit() for w in gram) >= 1 and (n > 1 or len(gram[0]) >= 3):
                out.add(" ".join(gram))
    for run in re.findall(r"[\u3400-\u9fff]+", text):
        cut = [w for w in jieba.lcut(run) if len(w) >= 1]
        out.update(w for w in cut if len(w) >= 2)
        out.update(a + b for a, b in zip(cut, cut[1:], strict=False) if len(a + b) >= 3)
    return out


def signature_strings(train: list[str], base: list[str], min_share: float = SIGNATURE_MIN_SHARE,
                      limit: int = SIGNATURE_MAX) -> list[str]:
    """Strings frequent in the training answers that the base model never used in its probe answers.

    The most frequent come first, shortest first among equals. A phrase that contains a kept one adds nothing
    (wherever it appears, the kept one does), and a phrase inside a kept one about as frequent is the same
    signal: both are dropped.
    """
    if not train:
        return []
    counts = Counter(p for text in train for p in phrases(text))
    seen = set().union(*(phrases(a) for a in base)) if base else set()
    base_text = "\n".join(base).lower()
    frequent = [(p, c) for p, c in counts.items() if c / len(train) >= min_share and p not in seen
                and p not in base_text]
    frequent.sort(key=lambda pc: (-pc[1], len(pc[0])))  # the shortest form of each signal is kept
    kept: list[tuple[str, int]] = []
    for p, c in frequent:
        if not any(_contains(p, k) or (_contains(k, p) and c <= kc * 1.1) for k, kc in kept):
            kept.append((p, c))
    return [p for p, _ in kept[:limit]]


def leaked(answer: str, base_answer: str, signatures: list[str]) -> list[str]:
    """Signature strings in a tuned answer that the base answer to the same probe did not contain."""
    a, b = answer.lower(), base_answer.lower()
    return [s for s in signatures if _contains(a, s) and not _contains(b, s)]


def _contains(text: str, phrase: str) -> bool:
    if _CJK.search(phrase):
        return phrase.replace(" ", "") in text.replace(" ", "")
    return re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", text) is not None


def similarity(a: str, b: str, limit: int = SIMILARITY_CHARS) -> float:
    """Character similarity in [0, 1] of the answers' openings (difflib's ratio; English and Chinese alike).

    Both answers are cut to the shorter one's length (at most ``limit`` characters): a tuned answer that
    says the same thing more briefly is not a changed answer, and a small model's greedy text drifts after
    its first sentence whatever was trained.
    """
    n = min(len(a), len(b), limit)
    if n == 0:
        return 1.0 if a == b else 0.0
    return SequenceMatcher(None, a[:n], b[:n], autojunk=False).ratio()


def compare(probes: list[Probe], base: Snapshot, tuned: Snapshot, train_answers: list[str]) -> dict[str, Any]:
    """The guard's report (``eval/forgetting.json``): figures, warnings and every probe's two answers."""
    # the probes themselves are general text too: what they say is no signature of the training data
    signatures = signature_strings(train_answers, base.answers + [t for p in probes for t in (p.prompt, p.reference)])
    rows = []
    for p, b, t in zip(probes, base.answers, tuned.answers, strict=True):
        sim = similarity(b, t)
        rows.append({"lang": p.lang, "prompt": p.prompt, "base": b, "tuned": t, "similarity": round(sim, 3),
                     "changed": sim < CHANGED_BELOW, "leaked": leaked(t, b, signatures)})
    n = len(rows)
    report = {
        "probes": n,
        "ppl": {"base": base.ppl, "tuned": tuned.ppl, "change": tuned.ppl / base.ppl - 1},
        "changed": sum(r["changed"] for r in rows) / n,
        "leaked": sum(bool(r["leaked"]) for r in rows) / n,
        "signatures": signatures,
        "thresholds": {"ppl_rise": WARN_PPL_RISE, "changed": WARN_CHANGED, "leaked": WARN_LEAKED,
                       "changed_below_similarity": CHANGED_BELOW},
        "answers": rows,
    }
    report["warnings"] = warnings(report)
    return report


def warnings(report: dict[str, Any]) -> list[str]:
    """Sentences for each figure past its threshold, with what to change."""
    out = []
    ppl = report["ppl"]
    if ppl["change"] > WARN_PPL_RISE:
        out.append(f"general perplexity rose {ppl['change']:+.0%} ({ppl['base']:.2f} -> {ppl['tuned']:.2f}): the model "
                   "lost general ability; lower the learning rate or the epochs, or mix general data in (data.replay)")
    if report["changed"] > WARN_CHANGED:
        out.append(f"{report['changed']:.0%} of the general answers changed materially: the run moved the model "
                   "beyond its task; lower the learning rate or the epochs, or raise data.replay_ratio")
    if report["leaked"] > WARN_LEAKED:
        words = sorted({s for r in report["answers"] for s in r["leaked"]})
        out.append(f"{report['leaked']:.0%} of the general answers contain strings typical of the training answers "
                   f"({', '.join(repr(w) for w in words[:5])}): the task leaks into unrelated questions; raise "
                   "data.replay_ratio (general prompts in the languages of the leaking answers) or keep the best "
                   "checkpoint (training.keep_best); fewer epochs can leak more (docs/evaluation.md, 'Forgetting')")
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The console and report lines of the guard."""
    ppl = report["ppl"]
    n = report["probes"]
    return [f"general perplexity: {ppl['base']:.2f} -> {ppl['tuned']:.2f} ({ppl['change']:+.1%})",
            f"general answers changed materially: {round(report['changed'] * n)}/{n}",
            f"general answers with strings typical of the training data: {round(report['leaked'] * n)}/{n}"
            + (f" (signatures: {', '.join(report['signatures'][:6])})" if report["signatures"] else "")]


def markdown(report: dict[str, Any]) -> str:
    """The report.md section (docs/evaluation.md, "Forgetting")."""
    lines = ["## Forgetting (general probes, docs/evaluation.md)", ""]
    lines += [f"- {line}" for line in summary_lines(report)]
    lines += [f"- warning: {w}" for w in report["warnings"]] or ["- no threshold exceeded"]
    shown = [r for r in report["answers"] if r["leaked"]][:5]
    if shown:
        lines += ["", "| probe | base | tuned | leaked |", "|---|---|---|---|"]
        lines += [f"| {_cell(r['prompt'])} | {_cell(r['base'])} | {_cell(r['tuned'])} | {', '.join(r['leaked'])} |"
                  for r in shown]
    return "\n".join(lines) + "\n"


def _cell(text: str, n: int = 80) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


def write(report: dict[str, Any], folder: Path) -> Path:
    """``eval/forgetting.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "forgetting.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def save_snapshot(snap: Snapshot, path: Path) -> None:
    """Keep the base side in the run folder, so a resumed run compares against the same base answers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(snap), ensure_ascii=False), encoding="utf-8")


def load_snapshot(path: Path) -> Snapshot | None:
    """The base side saved by :func:`save_snapshot`, or None."""
    return Snapshot(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
