"""Name lookups with 'did you mean' suggestions, shared by every registry."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` close matches for ``name`` among ``choices`` (case-insensitive)."""
    pool = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(pool), n=n, cutoff=0.6)
    return [pool[h] for h in hits]


def suggestion(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' sentence, or an empty string when nothing is close."""
    hits = did_you_mean(name, choices)
    return f" Did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""


class UnknownNameError(KeyError):
    """Raised by :class:`Registry` for a name it does not hold; lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence.
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> object mapping whose lookups fail with the valid names and a suggestion.

    Args:
        kind: What the registry holds, used in error messages ("template", "data format").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``; a second registration of the same name is a bug."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """Return the item, or raise :class:`UnknownNameError` naming the valid choices."""
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items))
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{suggestion(name, self._items)} Valid: {valid}."
            ) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def items(self) -> list[tuple[str, T]]:
        """(name, item) pairs in registration order."""
        return list(self._items.items())
