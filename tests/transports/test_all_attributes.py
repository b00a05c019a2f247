"""The package's public surface: `__all__` matches it, and adapters load only when asked.

Like anyio's test_all_attributes: a name added to a module but not re-exported (or
re-exported but gone) fails here, not in a user's import.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import transports
from transports import (
    LoopbackNetwork,
    LoopbackTransport,
    MemoryNetwork,
    MemoryTransport,
    open_transport,
)


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted_and_unique() -> None:
    assert transports.__all__ == sorted(set(transports.__all__), key=_isort_key)


def test_all_names_every_public_attribute() -> None:
    public = {
        name
        for name, value in vars(transports).items()
        if not name.startswith("_")
        # Submodules become attributes once imported (e.g. transports.grenache).
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert public == set(transports.__all__)


@pytest.mark.parametrize("name", transports.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(transports, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        module = value.__module__
        # Type aliases (JSON = Any, ...) are typing's objects; everything else is ours.
        assert module == "typing" or module.startswith("transports."), (name, module)


def test_importing_transports_does_not_import_grenache() -> None:
    code = (
        "import sys, transports\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('transports.grenache', 'h11')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- open_transport -----------------------------------------------------------------------


def test_open_memory_and_loopback() -> None:
    network = MemoryNetwork()
    memory = open_transport("memory", network=network)
    assert isinstance(memory, MemoryTransport)
    assert memory.network is network
    loopback = open_transport("loopback", network=LoopbackNetwork(seed=3))
    assert isinstance(loopback, LoopbackTransport)
    # Without a network each gets a private one.
    assert isinstance(open_transport("memory"), MemoryTransport)
    assert isinstance(open_transport("loopback"), LoopbackTransport)


def test_open_refuses_unknown_kinds_and_options() -> None:
    with pytest.raises(ValueError, match="unknown transport kind"):
        open_transport("carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        open_transport("memory", seed=1)


def test_open_grenache_imports_the_adapter_only_then(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class FakeGrenacheTransport(MemoryTransport):
        def __init__(self, **options: Any) -> None:
            super().__init__(MemoryNetwork())
            made.append(options)

    fake = types.ModuleType("transports.grenache")
    fake.GrenacheTransport = FakeGrenacheTransport  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "transports.grenache", fake)
    transport = open_transport("grenache", grape="http://127.0.0.1:30001")
    assert isinstance(transport, FakeGrenacheTransport)
    assert made == [{"grape": "http://127.0.0.1:30001"}]


def test_the_example_in_docs_runs() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "transports.md"
    example = doc.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, str(doc), "exec"), {"__name__": "docs_example"})
