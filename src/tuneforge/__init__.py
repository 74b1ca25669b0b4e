"""tuneforge: fine-tune causal language models you can trust, CPU first."""

__version__ = "0.1.0"
