"""The repository explains itself: its code cites its own docs/, never notes that live outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("src", "examples", "bench", "scripts", "tests") for p in (ROOT / d).rglob("*")
           if p.suffix in (".py", ".yaml", ".sh") and "egg-info" not in p.parts]
OUTSIDE = re.compile(r"DESIGN\.md|DESIGN §|§\d|\bthe seeds\b|seeds'|shared/seeds")


def test_no_source_cites_notes_outside_the_repository() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES if p.name != "test_docs.py"
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, f"cite docs/ instead: {hits}"


def test_every_cited_doc_exists() -> None:
    cited = {m for p in SOURCES for m in re.findall(r"docs/[\w-]+\.md", p.read_text(encoding="utf-8"))}
    assert cited, "the code cites its rules in docs/"
    missing = [c for c in cited if not (ROOT / c).is_file()]
    assert not missing, missing
