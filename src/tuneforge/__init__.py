"""tuneforge: fine-tune causal language models you can trust, CPU first."""

from tuneforge.utils.quiet import silence_known_noise

__version__ = "0.1.0"

silence_known_noise()  # before any library that logs it is imported (see utils/quiet.py)
