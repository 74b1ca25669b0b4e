"""Inference: one engine (load, template, generate, stream) shared by chat, server, eval and the web UI."""

from tuneforge.inference.engine import Engine, GenerationOptions

__all__ = ["Engine", "GenerationOptions"]
