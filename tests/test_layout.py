"""The layering rules of the project, checked on the code's own imports and literals.

- `orderbook_core` and `transports` import nothing of each other or of `exchange`;
- only a package itself imports its private modules (`transports._codec`, ...);
- the modules of `exchange/versions` share only public names (no `from ._x import _y`);
- canonical JSON is defined once (`orderbook_core.canonical_json`);
- the exchange's service names are string literals in `exchange/protocol/_names.py` only.
- no import circle inside `orderbook_core`, `transports` or `exchange` (lazy and
  TYPE_CHECKING imports count).
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports, lazily or not, TYPE_CHECKING too.

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``.
    A package's implicit import of its parent (Python runs ``a/__init__`` before
    ``a.b``) is not an edge: only what the code writes is.
    """
    paths = [p for p in _modules() if p.relative_to(REPO).parts[0] in packages]
    known = {_module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    edges.add(target if target in known else node.module)
        graph[_module_name(path)] = edges & known - {_module_name(path)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


@pytest.mark.parametrize("package", ["orderbook_core", "transports", "exchange"])
def test_no_import_circles(package: str) -> None:
    assert _cycles(_import_graph((package,))) == []


def test_the_circle_check_sees_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


EXCHANGE_LAYERS = [
    {"exchange.protocol"},
    {"exchange.versions", "exchange.runtime"},
    {"exchange.client", "exchange.sequencer", "exchange.matcher"},
    {"exchange.tools"},
    {"exchange"},
]
"""docs/architecture.md's layers of `exchange`, lowest first."""


def test_exchange_packages_import_only_from_the_layers_below() -> None:
    layer = {package: n for n, packages in enumerate(EXCHANGE_LAYERS) for package in packages}

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _import_graph(("exchange",)).items()
        for target in targets
        if package(module) != package(target) and layer[package(module)] <= layer[package(target)]
    )
    assert wrong == []


def test_exchange_modules_stay_under_600_lines() -> None:
    long = {
        path.relative_to(REPO).as_posix(): n
        for path in (REPO / "exchange").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert long == {}, "split these along their seams"
