"""Evaluation (issue 4 grows this): perplexity for now."""

from tuneforge.evaluation.perplexity import perplexity

__all__ = ["perplexity"]
