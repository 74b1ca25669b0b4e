"""Paths typed into the web UI stay inside the working directory and the configured data folders."""

from __future__ import annotations

from pathlib import Path

from tuneforge.utils.errors import ConfigError, Problem


class PathGuard:
    """Resolves user-typed paths against the allowed roots and refuses anything outside them.

    Relative paths are taken from the working directory; ``..`` and symbolic links are resolved first,
    so neither can lead out of the roots.
    """

    def __init__(self, workdir: str | Path, data_dirs: list[str | Path] | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.roots = [self.workdir, *(Path(d).resolve() for d in data_dirs or [])]

    def resolve(self, typed: str, field: str = "path", must_exist: bool = True) -> Path:
        """The absolute path of ``typed`` when it lies inside a root.

        Raises:
            ConfigError: outside every root, or missing when ``must_exist``.
        """
        raw = Path(typed.strip()).expanduser()
        path = (raw if raw.is_absolute() else self.workdir / raw).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            raise ConfigError("path not allowed", [Problem(
                f"{typed!r} is outside the folders this UI may read", field=field,
                fix=f"use a path inside {', '.join(map(str, self.roots))} (or start `tuneforge webui "
                    f"--data-dir FOLDER` to allow another folder)")])
        if must_exist and not path.exists():
            raise ConfigError("path not found", [Problem(f"{typed!r} does not exist", file=str(path), field=field,
                                                         fix="check the spelling; relative paths start at "
                                                             f"{self.workdir}")])
        return path

    def model(self, typed: str) -> str:
        """A model as the config takes it: 'default', an allowed path, or a hub id (no local file read)."""
        typed = typed.strip() or "default"
        if typed == "default":
            return typed
        candidate = Path(typed).expanduser()
        looks_hub = typed.count("/") == 1 and not typed.startswith((".", "/", "~"))
        if looks_hub and not (self.workdir / candidate).exists():
            return typed
        return str(self.resolve(typed, "model"))

    def dataset_infos(self) -> list[Path]:
        """``dataset_info.json`` files directly inside the roots or one folder down."""
        found: list[Path] = []
        for root in self.roots:
            found += sorted(root.glob("dataset_info.json")) + sorted(root.glob("*/dataset_info.json"))
        return list(dict.fromkeys(found))
