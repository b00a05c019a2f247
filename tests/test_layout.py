"""The layering rules of the project, checked on the code's own imports and literals.

- `orderbook_core` and `transports` import nothing of each other or of `exchange`;
- only a package itself imports its private modules (`transports._codec`, ...);
- the modules of `exchange/versions` share only public names (no `from ._x import _y`);
- canonical JSON is defined once (`orderbook_core.canonical_json`);
- the exchange's service names are string literals in `exchange/protocol/_names.py` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CODE = ["orderbook_core", "transports", "exchange", "bin", "bench", "examples"]
SERVICE_NAMES = {"submit_order", "process_order", "orderbook_head", "orderbook_updated"}


def _modules() -> list[Path]:
    return sorted(p for top in CODE for p in (REPO / top).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["orderbook_core", "transports"])
def test_private_modules_are_imported_only_by_their_package(package: str) -> None:
    for path in _modules():
        if path.relative_to(REPO).parts[0] == package:
            continue
        private = {n for n in _imports(path) if n.startswith(f"{package}._")}
        assert not private, f"{path.relative_to(REPO)} imports {sorted(private)}"


def _is_private_name(dotted: str) -> bool:
    """An underscore name that is not a module (``_x`` and ``__future__`` are fine)."""
    name = dotted.rsplit(".", 1)[-1]
    path = REPO.joinpath(*dotted.split("."))
    module = path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
    return name.startswith("_") and not name.startswith("__") and not module


def test_versions_modules_import_no_underscore_names() -> None:
    for path in sorted((REPO / "exchange" / "versions").rglob("*.py")):
        private = {n for n in _imports(path) if _is_private_name(n)}
        assert not private, f"{path.relative_to(REPO)} imports {sorted(private)}"


def test_dependencies_point_one_way() -> None:
    forbidden = {"orderbook_core": ("transports", "exchange"), "transports": ("orderbook_core",
                 "exchange")}  # fmt: skip
    for path in _modules():
        top = path.relative_to(REPO).parts[0]
        for name in _imports(path):
            assert not name.startswith(forbidden.get(top, ())), f"{path}: imports {name}"


def test_canonical_json_is_defined_once() -> None:
    packages = ("orderbook_core", "transports", "exchange")
    dumpers = [
        path.relative_to(REPO).as_posix()
        for path in _modules()
        if path.relative_to(REPO).parts[0] in packages and "sort_keys=True" in path.read_text()
    ]
    assert dumpers == ["orderbook_core/_encoding.py"]


def test_service_names_are_literals_in_the_protocol_only() -> None:
    where: dict[str, list[str]] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in SERVICE_NAMES:
                where.setdefault(path.relative_to(REPO).as_posix(), []).append(node.value)
    assert set(where) == {"exchange/protocol/_names.py"}, where
