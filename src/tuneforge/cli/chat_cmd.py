"""``tuneforge chat``: streaming terminal chat with the same template as training."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import typer

from tuneforge.cli.common import console, device_map_option, handle_errors


@handle_errors
def chat(model: str = typer.Argument("default", help="'default', a run folder, a model or adapter folder, a .gguf file "
                                                      "or a hub id."),
         prompt: str = typer.Option(None, "--prompt", help="Answer this once and exit (for scripts)."),
         system: str = typer.Option("", "--system", help="System prompt."),
         template: str = typer.Option("auto", "--template", help="Chat template (default: the model's own)."),
         temperature: float = typer.Option(0.7, help="0 = greedy."),
         top_p: float = typer.Option(0.9, "--top-p"),
         max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
         repetition_penalty: float = typer.Option(1.1, "--repetition-penalty"),
         device_map: str = typer.Option(None, "--device-map", help="'auto': spread a model larger than one GPU "
                                        "over every GPU.")) -> None:
    """Chat with a model: multi-turn history, /reset to clear it, /exit to leave."""
    from tuneforge.data.records import Message
    from tuneforge.inference import Engine, GenerationOptions
    from tuneforge.models.classifier import classifier_meta

    if classifier_meta(model) is not None:  # a seq_cls / token_cls run answers with labels, not text
        _classify(model, prompt)
        return
    engine = Engine.load(model, template, device_map=device_map_option(device_map))
    options = GenerationOptions(max_new_tokens, temperature, top_p, repetition_penalty)
    if prompt is not None:
        for piece in engine.stream([Message("user", prompt)], options, system):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    console.print(f"chatting with {model} (template {engine.template.name}); /reset clears history, /exit quits")
    history: list[Message] = []
    for text in _typed("[bold cyan]you>[/] "):
        if text.strip() == "/reset":
            history = []
            console.print("[dim]history cleared[/]")
            continue
        history.append(Message("user", text))
        console.print("[bold green]model>[/] ", end="")
        answer = ""
        for piece in engine.stream(history, options, system):
            answer += piece
            console.print(piece, end="", markup=False, highlight=False)
        console.print()
        history.append(Message("assistant", answer))


def _classify(model: str, prompt: str | None) -> None:
    """Label each text typed (or ``--prompt``): the predicted class and every class's probability; for a
    tagger, each word with its tag and probability."""
    from tuneforge.models.classifier import Classifier

    classifier = Classifier.load(model)
    if prompt is not None:
        console.print(_labelled(classifier, prompt), highlight=False)
        return
    kind = "tags words" if classifier.token_level else f"labels texts ({', '.join(classifier.labels)})"
    console.print(f"{model} {kind}; /exit quits")
    for text in _typed("[bold cyan]text>[/] "):
        console.print(_labelled(classifier, text), highlight=False)


def _typed(prompt: str) -> Iterator[str]:
    """The lines typed at ``prompt``, blank ones skipped, until ``/exit``, end of input or Ctrl-C."""
    while True:
        try:
            text = console.input(prompt)
        except (EOFError, KeyboardInterrupt):
            return
        if text.strip() == "/exit":
            return
        if text.strip():
            yield text


def _labelled(classifier: object, text: str) -> str:
    """``label: positive`` and the probabilities, or ``word/TAG (p)`` for each word."""
    from rich.markup import escape

    from tuneforge.models.classifier import split_words

    c: Any = classifier
    if c.token_level:
        words = split_words(text)
        probs = c.tag_probabilities([words])[0]
        return escape(" ".join(f"{w}/{c.labels[max(range(len(p)), key=p.__getitem__)]} ({max(p):.2f})"
                               for w, p in zip(words, probs, strict=True)))
    probs = c.probabilities([text])[0]
    ranked = sorted(zip(c.labels, probs, strict=True), key=lambda x: -x[1])
    return escape(f"label: {ranked[0][0]}\n" + "  ".join(f"{name} {p:.3f}" for name, p in ranked))
