"""Hyper-parameter advice (DESIGN §10.2): defaults for what the user left out, each with its reason."""

from tuneforge.advice.recommend import Advice, recommend

__all__ = ["Advice", "recommend"]
