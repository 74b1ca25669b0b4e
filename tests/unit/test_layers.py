"""ARCHITECTURE.md: each layer imports only from layers below it (same layer allowed, never upwards)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tuneforge"
LAYER = {
    "utils": 0, "config": 1, "data": 2, "models": 2,
    "training": 3, "distributed": 3, "evaluation": 3, "inference": 3, "export": 3, "advice": 3,
    "cli": 4, "webui": 4, "server": 4,
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
    return [m for m in out if m.startswith("tuneforge.")]


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYER), f"packages without a layer: {packages - set(LAYER)}"


def test_no_module_imports_from_a_higher_layer() -> None:
    violations = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = LAYER.get(rel.parts[0]) if len(rel.parts) > 1 else None
        if own is None:
            continue
        for module in _imports(path):
            target = _layer_of(module)
            if target is not None and target > own:
                violations.append(f"{rel} imports {module}")
    assert not violations, "\n".join(violations)


def test_checker_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from tuneforge.cli.main import app\nimport tuneforge.data.loader\n")
    assert [_layer_of(m) for m in _imports(bad)] == [4, 2]
