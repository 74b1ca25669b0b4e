"""Problems that name where they are and how to fix them, reported all at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]

#: How many problems are printed before the rest is summarised as a count.
MAX_SHOWN = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config value or a data record.

    Attributes:
        message: What is wrong, in one sentence.
        file: The file it is in (config file or data file), if any.
        index: 0-based record index in the file, if it concerns one record.
        line: 1-based line in the file, when known.
        field: The key or field path, e.g. ``data.max_length`` or ``conversations[2].from``.
        fix: What the user should do about it.
        severity: ``error`` stops the command; ``warning`` is reported and the command goes on.
    """

    message: str
    file: str | None = None
    index: int | None = None
    line: int | None = None
    field: str | None = None
    fix: str | None = None
    severity: Severity = "error"

    def where(self) -> str:
        """Human-readable location: ``file record 3 (line 17), field 'output'``."""
        parts = []
        if self.file:
            parts.append(self.file)
        if self.index is not None:
            parts.append(f"record {self.index}")
        if self.line is not None:
            parts.append(f"(line {self.line})" if self.index is not None else f"line {self.line}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return " ".join(parts)

    def render(self) -> str:
        """One line: location, message and fix."""
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} Fix: {self.fix}" if self.fix else text

    def to_dict(self) -> dict:
        """JSON-friendly form (used by ``--json`` outputs)."""
        return asdict(self)


def render_problems(problems: Iterable[Problem], limit: int = MAX_SHOWN) -> str:
    """Render problems one per line, capped at ``limit`` with a count of the rest."""
    items = list(problems)
    lines = [f"- {p.render()}" for p in items[:limit]]
    if len(items) > limit:
        lines.append(f"... and {len(items) - limit} more problem(s) of the same kinds.")
    return "\n".join(lines)


class TuneforgeError(Exception):
    """An error the user can fix; carries every problem found, not just the first.

    Attributes:
        problems: All problems found.
        exit_code: Process exit code for the CLI.
    """

    exit_code = 1

    def __init__(self, title: str, problems: list[Problem] | None = None) -> None:
        self.title = title
        self.problems = problems or []
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if not self.problems:
            return self.title
        return f"{self.title}\n{render_problems(self.problems)}"


class ConfigError(TuneforgeError):
    """Invalid configuration (exit code 2, like a usage error)."""

    exit_code = 2


class DataError(TuneforgeError):
    """Invalid or unusable data."""


class ModelError(TuneforgeError):
    """A model or tokenizer could not be found or loaded."""
