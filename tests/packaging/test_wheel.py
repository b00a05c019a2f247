"""The wheel stands on its own: built from the checkout, installed in a fresh virtual
environment outside it (dependencies from the package index), and used there as a user
would: imports, the console scripts, an example, and ``mypy --strict`` on user code.

One module-scoped build and install (about 15-30 s); the tests read what it recorded.
The base install comes first and is checked as it is; the extras are installed after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("orderbook_core", "transports", "exchange")
Completed = subprocess.CompletedProcess[str]
WORKER_SCRIPTS = {"exchange.client:main", "exchange.sequencer:main", "exchange.matcher:main"}


def run(cmd: Sequence[object], *, cwd: Path, timeout: float = 300) -> Completed:
    """Run with the caller's environment minus anything that would reach the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def ok(proc: Completed) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


PROBE = """
import importlib, importlib.metadata as md, json, sys
out = {"files": {}, "errors": {}}
for name in ("orderbook_core", "transports", "exchange", "orderbook_core.testing",
             "transports.grenache"):
    try:
        out["files"][name] = importlib.import_module(name).__file__
    except ImportError as exc:
        out["errors"][name] = str(exc)
dist = md.distribution("distributed-exchange")
out["scripts"] = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
out["requires"] = dist.requires or []
print(json.dumps(out))
"""


@dataclass
class Installed:
    """What the fixture built, installed and observed."""

    root: Path
    wheel: Path
    python: Path
    base: dict[str, object] = field(default_factory=dict)
    extras: dict[str, object] = field(default_factory=dict)
    help: dict[str, Completed] = field(default_factory=dict)

    def bin(self, name: str) -> Path:
        return self.python.parent / name


def copy_sources(dest: Path) -> None:
    """What the sdist would hold: pyproject, README and the packages (no build/ leftovers,
    no caches), so the wheel is built from exactly the checkout's files."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.is_relative_to(REPO)
    copy_sources(root / "src")
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist",
            root / "src"], cwd=root))  # fmt: skip
    [wheel] = (root / "dist").glob("distributed_exchange-*.whl")
    ok(run([sys.executable, "-m", "venv", root / "venv"], cwd=root))
    python = root / "venv" / "bin" / "python"
    ok(run([python, "-m", "pip", "install", "-q", wheel], cwd=root))
    result = Installed(root, wheel, python)
    result.base = json.loads(ok(run([python, "-c", PROBE], cwd=root)))
    result.help["dex"] = run([result.bin("dex"), "--help"], cwd=root)
    result.help["dex demo"] = run([result.bin("dex"), "demo"], cwd=root)
    result.help["metrics"] = run(
        [result.bin("dex-submit-order-worker"), "--metrics-port", "0", "--db", root / "j.db"],
        cwd=root,
    )
    ok(run([python, "-m", "pip", "install", "-q", f"{wheel}[grenache,testing]"], cwd=root))
    result.extras = json.loads(ok(run([python, "-c", PROBE], cwd=root)))
    return result


def test_the_wheel_holds_every_module_and_the_typed_markers(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for package in PACKAGES:
        assert f"{package}/py.typed" in names, package
        for path in (REPO / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert path.relative_to(REPO).as_posix() in names, path
    assert not any(name.startswith(("tests/", "examples/", "bench/", "bin/")) for name in names)


def test_base_install_imports_from_the_venv(installed: Installed) -> None:
    files = installed.base["files"]
    assert isinstance(files, dict)
    for package in PACKAGES:
        assert Path(files[package]).is_relative_to(installed.root / "venv"), files[package]
    errors = installed.base["errors"]
    assert isinstance(errors, dict)
    # The extras are optional, and say so: hypothesis for the testing helpers, the HTTP
    # parser for the Grenache adapter.
    assert 'pip install "distributed-exchange[testing]"' in errors["orderbook_core.testing"]
    assert "httptools" in errors["transports.grenache"]


def test_dependencies_are_split_into_extras(installed: Installed) -> None:
    requires = installed.base["requires"]
    assert isinstance(requires, list)
    base = sorted(r.split(">")[0] for r in requires if "extra ==" not in r)
    assert base == ["anyio", "cryptography", "pynacl"]  # Ed25519 signing is not optional
    extras = {r.split("extra == ")[1].strip("'\"") for r in requires if "extra ==" in r}
    assert {"grenache", "testing", "dev"} <= extras


def test_extras_install_the_optional_parts(installed: Installed) -> None:
    assert installed.extras["errors"] == {}


def test_console_scripts(installed: Installed) -> None:
    dex = installed.help["dex"]
    assert dex.returncode == 0, dex.stderr
    assert "usage: dex" in dex.stdout
    scripts = installed.base["scripts"]
    assert isinstance(scripts, dict)
    assert scripts["dex"].startswith("exchange.")
    # The workers' and the client's scripts, once the package declares them.
    for name, target in sorted(scripts.items()):
        if target in WORKER_SCRIPTS:
            out = run([installed.bin(name), "--help"], cwd=installed.root)
            assert out.returncode == 0, (name, out.stderr)
            assert "usage:" in out.stdout, name


def test_the_whole_exchange_runs_from_the_base_install(installed: Installed) -> None:
    """``dex demo``: both workers and four clients on the memory transport; it exits
    non-zero unless every replica holds the book of a replay of the journal."""
    demo = installed.help["dex demo"]
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]


def test_metrics_without_their_extra_say_which_extra(installed: Installed) -> None:
    """The base install runs without prometheus-client; ``--metrics-port`` names the
    extra and exits 2 before opening anything."""
    worker = installed.help["metrics"]
    assert worker.returncode == 2, worker.stdout + worker.stderr
    assert "pip install 'distributed-exchange[metrics]'" in worker.stderr
    assert not (installed.root / "j.db").exists()


def test_an_example_runs_against_the_installed_packages(installed: Installed) -> None:
    work = installed.root / "example"
    work.mkdir()
    shutil.copy2(REPO / "examples" / "core_basics.py", work / "core_basics.py")
    out = ok(run([installed.python, "core_basics.py"], cwd=work))
    assert "refused: price: not a multiple of 0.01" in out


USER_CODE = """
from orderbook_core import DEFAULT_SPEC, OrderBook, Trade, parse_command
from orderbook_core.testing import ReferenceBook
from transports import MemoryNetwork, Transport, open_transport
from exchange import ClientNode


def best_bid_after(payloads: list[dict[str, object]]) -> int | None:
    book = OrderBook(DEFAULT_SPEC)
    for seq, payload in enumerate(payloads, start=1):
        for event in book.apply(parse_command(payload, DEFAULT_SPEC, seq=seq, ts=0)):
            if isinstance(event, Trade):
                print(event.price)
    return book.best_bid()


def transport() -> Transport:
    return open_transport("memory", network=MemoryNetwork())


reference: ReferenceBook = ReferenceBook(DEFAULT_SPEC)
node_type: type[ClientNode] = ClientNode
"""

WRONG_CODE = """
from orderbook_core import OrderBook

def wrong(book: OrderBook) -> str:
    return book.best_bid()
"""


def test_mypy_strict_reads_the_installed_types(installed: Installed) -> None:
    """py.typed is honoured: mypy checks user code against the wheel's annotations (and
    finds a real error), with no access to the checkout."""
    work = installed.root / "typed"
    work.mkdir()
    (work / "user.py").write_text(USER_CODE)
    (work / "wrong.py").write_text(WRONG_CODE)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-executable", installed.python]
    mypy += ["--cache-dir", work / ".mypy_cache", "--config-file", os.devnull]
    ok(run([*mypy, "user.py"], cwd=work))
    wrong = run([*mypy, "wrong.py"], cwd=work)
    assert wrong.returncode == 1
    assert "wrong.py:5: error: Incompatible return value type" in wrong.stdout, wrong.stdout
