"""Text metrics against values computed independently with sacrebleu, rouge-score and jieba."""

from __future__ import annotations

import jieba
import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from tuneforge.evaluation.metrics import bleu4, corpus_scores, exact_match, rouge, segment

EN = ("The cat sat on the mat near the door.", "The cat was sitting on the mat by the door.")
ZH = ("我们今天去北京大学参观了图书馆", "今天我们参观了北京大学的图书馆")


class _Split:
    @staticmethod
    def tokenize(text: str) -> list[str]:
        return text.split()


def _reference_bleu(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    bleu = BLEU(tokenize="none", smooth_method="exp", effective_order=True)
    return bleu.sentence_score(" ".join(pred_tokens), [" ".join(ref_tokens)]).score


def _reference_rouge(pred_tokens: list[str], ref_tokens: list[str]) -> dict[str, float]:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Split())
    return {k: 100 * v.fmeasure for k, v in scorer.score(" ".join(ref_tokens), " ".join(pred_tokens)).items()}


def test_english_is_split_into_words_and_punctuation() -> None:
    assert segment("Hello, world! It's 42.") == ["Hello", ",", "world", "!", "It", "'", "s", "42", "."]


def test_chinese_is_segmented_with_jieba_and_mixed_text_keeps_both() -> None:
    assert segment(ZH[0]) == [w for w in jieba.lcut(ZH[0]) if w.strip()]
    mixed = segment("我爱Python和PyTorch 2.13")
    assert "Python" in mixed and "PyTorch" in mixed and "我" in mixed and "13" in mixed


@pytest.mark.parametrize("pair", [EN, ZH], ids=["english", "chinese"])
def test_bleu_and_rouge_equal_the_libraries_on_the_same_tokens(pair: tuple[str, str]) -> None:
    pred, ref = pair
    if pair is ZH:
        pred_t, ref_t = jieba.lcut(pred), jieba.lcut(ref)
    else:
        pred_t, ref_t = pred.replace(".", " .").split(), ref.replace(".", " .").split()
    expected_bleu = _reference_bleu(pred_t, ref_t)
    assert 0 < expected_bleu < 100
    assert bleu4(pred, ref) == pytest.approx(expected_bleu)
    got, expected = rouge(pred, ref), _reference_rouge(pred_t, ref_t)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert got[key] == pytest.approx(expected[key]), key
    assert got["rouge1"] > got["rouge2"]


@pytest.mark.parametrize("text", [EN[0], ZH[0]])
def test_identical_texts_score_100(text: str) -> None:
    assert bleu4(text, text) == pytest.approx(100)
    assert rouge(text, text) == pytest.approx({"rouge1": 100, "rouge2": 100, "rougeL": 100})
    assert exact_match(text, text) == 100


def test_disjoint_and_empty_predictions_score_0() -> None:
    assert bleu4("alpha beta gamma delta", "one two three four") == 0
    assert rouge("alpha beta gamma delta", "one two three four")["rougeL"] == 0
    assert bleu4("苹果香蕉", "火车飞机") == 0
    assert bleu4("", EN[1]) == 0 and rouge("", EN[1])["rouge1"] == 0 and exact_match("", EN[1]) == 0


def test_exact_match_normalisations() -> None:
    assert exact_match("  Positive. ", "positive") == 100
    assert exact_match("正面。", "正面") == 100
    assert exact_match("ＡＢＣ", "abc") == 100
    assert exact_match("Positive.", "positive", steps=()) == 0
    assert exact_match("negative", "positive") == 0


def test_corpus_scores_are_means_and_refuse_mismatched_lists() -> None:
    scores = corpus_scores([EN[1], "nothing alike"], [EN[1], EN[1]])
    assert scores["exact_match"] == 50
    assert scores["bleu4"] == pytest.approx((100 + bleu4("nothing alike", EN[1])) / 2)
    with pytest.raises(ValueError, match="as many"):
        corpus_scores(["a"], [])
