"""Hyper-parameter advice (docs/advice.md): defaults for what the user left out, each with its reason."""

from tuneforge.advice.recommend import Advice, recommend

__all__ = ["Advice", "recommend"]
