"""Where tuneforge keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """Root of tuneforge's cache: ``$TUNEFORGE_HOME`` or ``~/.cache/tuneforge``."""
    env = os.environ.get("TUNEFORGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tuneforge"


def models_dir() -> Path:
    """Folder holding prepared (converted) models."""
    return cache_home() / "models"
