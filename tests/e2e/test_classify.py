"""seq_cls and token_cls: an encoder (tiny BERT) and a decoder (tiny llama) learn labels, save them, are
evaluated on held-out data (accuracy, macro-F1, per-class report, confusion matrix), answer in chat, and
export merged; labels the run never saw are refused with their record."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.e2e.conftest import losses, write_config
from tuneforge.cli.main import app
from tuneforge.config import load_config
from tuneforge.training.runner import train

pytestmark = pytest.mark.slow

GOOD, BAD = ["good", "great", "lovely", "superb", "wonderful"], ["bad", "awful", "boring", "terrible", "dull"]
THINGS = ["film", "meal", "book", "trip", "song", "hotel", "game", "show"]
COLOURS, OTHER = ["red", "blue", "green", "yellow"], ["the", "car", "is", "very", "my", "house", "looks", "old"]


def _sentiment(n: int = 80, seed: int = 0) -> list[dict[str, Any]]:
    """The class word opens and closes the text: an encoder pools the first token, a decoder the last."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word = rng.choice(GOOD if i % 2 else BAD)
        rows.append({"text": f"{word} {rng.choice(THINGS)} {rng.choice(THINGS)} {word}",
                     "label": "pos" if i % 2 else "neg"})
    return rows


def _colours(n: int = 80, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(COLOURS if rng.random() < 0.3 else OTHER) for _ in range(rng.randint(4, 7))]
        rows.append({"tokens": words, "tags": ["COLOUR" if w in COLOURS else "O" for w in words]})
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> dict[str, Path]:
    """A tiny random BERT (encoder) and llama (decoder), both with the default model's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    from tuneforge.models.tiny import save_tiny

    root = tmp_path_factory.mktemp("cls-models")
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id or 0)
    BertModel(bert).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return {"bert": root / "bert", "llama": save_tiny(tokenizer, root / "llama")}


def _train(tmp_path: Path, model: Path, rows: list[dict[str, Any]], stage: str, method: str, **extra: Any) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    training = {"stage": stage, "max_steps": 40, "learning_rate": 5e-3, "eval_steps": 20, "save_steps": 20,
                **extra.pop("training", {})}
    cfg = write_config(tmp_path, model, tmp_path / "data.json", method={"name": method}, training=training,
                       data={"split": [0.7, 0.1, 0.2]}, **extra)
    return train(load_config(cfg), str(cfg), progress=False, echo=lambda m: None)


@pytest.mark.parametrize(("arch", "method"), [("bert", "full"), ("llama", "lora")])
def test_seq_cls_learns_saves_its_labels_evaluates_chats_and_exports(tmp_path: Path, models: dict[str, Path],
                                                                     arch: str, method: str) -> None:
    result = _train(tmp_path, models[arch], _sentiment(), "seq_cls", method)
    run = result.run.root
    steps = losses(run)
    assert steps[max(steps)] < 0.5 * steps[1], steps  # it learnt
    meta = json.loads((run / "model" / "tuneforge_training.json").read_text())
    assert meta["labels"] == ["neg", "pos"] and meta["stage"] == "seq_cls"

    # held-out evaluation after training: accuracy and macro-F1 against the majority class
    m = result.evaluation.metrics
    assert m["tuned"]["accuracy"] >= 0.9 and m["tuned"]["macro_f1"] >= 0.9, m
    assert m["tuned"]["accuracy"] > m["base"]["accuracy"]
    report = (run / "report.md").read_text()
    assert "### Per class (tuned)" in report and "eval/confusion.png" in report
    assert (run / "eval" / "confusion.png").stat().st_size > 1000

    # eval --json reports accuracy and macro_f1; an evaluation file with an unseen label is refused
    out = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert out.exit_code == 0, out.output
    tuned = json.loads(out.stdout[out.stdout.index("{"):])["metrics"]["tuned"]
    assert set(tuned) == {"accuracy", "macro_f1"} and tuned["accuracy"] >= 0.9
    (tmp_path / "new.json").write_text(json.dumps([{"text": "great film", "label": "pos"},
                                                   {"text": "so-so film", "label": "neutral"}], indent=1))
    out = CliRunner().invoke(app, ["eval", str(run), "--file", str(tmp_path / "new.json")])
    assert out.exit_code != 0 and "neutral" in out.output and "new.json" in out.output and "label" in out.output

    # chat prints the label and the probabilities
    out = CliRunner().invoke(app, ["chat", str(run), "--prompt", "superb song game superb"])
    assert out.exit_code == 0 and out.stdout.startswith("label: pos"), out.output
    probs = dict(zip(out.stdout.split()[2::2], map(float, out.stdout.split()[3::2]), strict=True))
    assert set(probs) == {"pos", "neg"} and abs(sum(probs.values()) - 1) < 1e-2 and probs["pos"] > 0.5

    # a classifier never loads as a text generator (serve, the chat engine): its head would be dropped
    from tuneforge.inference import Engine
    from tuneforge.utils.errors import ModelError

    with pytest.raises(ModelError, match="does not generate"):
        Engine.load(str(run))

    # export: merged (LoRA) or saved (full), verified on the logits, loads as a plain classifier
    from transformers import AutoModelForSequenceClassification

    from tuneforge.export import export_run
    from tuneforge.models.classifier import Classifier

    exported = export_run(str(run), str(tmp_path / "out"))
    assert exported.merged == (method == "lora") and exported.verification.ok
    assert exported.verification.max_logit_diff < 1e-3
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert plain.config.id2label == {0: "neg", 1: "pos"}
    texts = ["awful meal book awful", "lovely trip hotel lovely"]
    assert Classifier.load(str(tmp_path / "out")).classify(texts) == Classifier.load(str(run)).classify(texts) \
        == ["neg", "pos"]


@pytest.mark.parametrize(("arch", "method"), [("bert", "full"), ("llama", "lora")])
def test_token_cls_tags_each_word(tmp_path: Path, models: dict[str, Path], arch: str, method: str) -> None:
    result = _train(tmp_path, models[arch], _colours(), "token_cls", method)
    run = result.run.root
    m = result.evaluation.metrics
    assert m["tuned"]["macro_f1"] >= 0.9 and m["tuned"]["macro_f1"] > m["base"]["macro_f1"], m
    assert json.loads((run / "model" / "tuneforge_training.json").read_text())["labels"] == ["COLOUR", "O"]
    out = CliRunner().invoke(app, ["chat", str(run), "--prompt", "my red car is blue"])
    assert out.exit_code == 0, out.output
    assert [w.split("/")[1] for w in out.stdout.split()[::2]] == ["O", "COLOUR", "O", "O", "COLOUR"], out.output
    from tuneforge.models.classifier import Classifier

    assert Classifier.load(str(run)).tag([["green", "house"]]) == [["COLOUR", "O"]]


@pytest.mark.parametrize("method", ["dora", "ia3", "ln_tuning", "adalora", "bitfit", "freeze", "qlora", "adapter"])
def test_other_methods_train_the_head_with_their_parameters(tmp_path: Path, models: dict[str, Path],
                                                            method: str) -> None:
    """Every method that changes weights trains a classifier: the new head and the method's own parameters."""
    if method == "qlora":
        pytest.importorskip("bitsandbytes", reason="bitsandbytes is installed only on Linux")
    result = _train(tmp_path, models["bert"], _sentiment(), "seq_cls", method,
                    evaluation={"auto": False})
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert any("classifier" in n for n in trainable), sorted(trainable)[:5]
    assert any("classifier" not in n for n in trainable)  # and the method's own
    steps = losses(result.run.root)
    assert min(steps[s] for s in steps if s > 30) < steps[1], steps


def test_virtual_token_methods_are_refused_for_classification(tmp_path: Path, models: dict[str, Path]) -> None:
    from tuneforge.utils.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _train(tmp_path, models["llama"], _sentiment(), "seq_cls", "prompt")
    assert "seq_cls" in str(info.value) or any("seq_cls" in p.message for p in info.value.problems)


def test_the_loss_of_an_accumulated_step_is_that_of_one_batch(tmp_path: Path, models: dict[str, Path]) -> None:
    """4 x 1 accumulated examples log (and step by) the same mean loss as one batch of 4."""
    first = {}
    for ga in (1, 4):
        result = _train(tmp_path / f"ga{ga}", models["llama"], _sentiment(), "seq_cls", "lora",
                        evaluation={"auto": False},
                        training={"max_steps": 1, "batch_size": 4 // ga, "gradient_accumulation": ga})
        first[ga] = losses(result.run.root)[1]
    assert first[4] == pytest.approx(first[1], rel=0.05), first
