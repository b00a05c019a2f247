"""Run the Node helper scripts of `tests/node/` against the installed `node_modules`.

- `require_node()` fails (never skips) with a clear message when node or the Grenache
  packages are missing: run ``make setup`` (CI runs ``npm ci`` first).
- `run_node(script, *args)` runs a one-shot helper and returns the JSON object on the
  last line of its stdout; `arun_node` is the same for async tests (it does not block
  the event loop, so a Python server in the same loop can answer the Node peer).
- `open_node(script, *args)` starts a long-running helper (e.g. a Node RPC server),
  waits for its ``{"ready": ...}`` line and stops it by PID on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

__all__ = [
    "NODE_MODULES",
    "NODE_SCRIPTS",
    "REPO_ROOT",
    "NodeProcess",
    "arun_node",
    "node_env",
    "open_node",
    "require_node",
    "run_node",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"
NODE_SCRIPTS = REPO_ROOT / "tests" / "node"
_PACKAGES = ("grenache-grape", "grenache-nodejs-http", "grenache-nodejs-link")


def require_node() -> str:
    """Return the path of `node`; fail the test when Node or the packages are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: install Node.js 20 and run `make setup`")
    missing = [p for p in _PACKAGES if not (NODE_MODULES / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"node_modules lacks {', '.join(missing)}: run `make setup` (it runs `npm ci`)")
    return node


def node_env() -> dict[str, str]:
    """Environment for Node helpers: modules resolved from the repository's node_modules."""
    env = dict(os.environ)
    env["NODE_PATH"] = str(NODE_MODULES)
    return env


def _command(script: str, args: tuple[str, ...]) -> list[str]:
    path = NODE_SCRIPTS / script
    if not path.is_file():
        raise FileNotFoundError(path)
    return [require_node(), str(path), *args]


def _last_json(stdout: str, stderr: str, script: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"{script} printed nothing; stderr:\n{stderr[-2000:]}")
    try:
        value = json.loads(lines[-1])
    except ValueError as exc:
        raise AssertionError(f"{script}: last line is not JSON: {lines[-1]!r}") from exc
    if not isinstance(value, dict):
        raise AssertionError(f"{script}: last line is not a JSON object: {lines[-1]!r}")
    return value


def run_node(script: str, *args: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run ``node tests/node/<script> args...``; return its last stdout line as JSON."""
    proc = subprocess.run(
        _command(script, args),
        cwd=REPO_ROOT,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{script} exited {proc.returncode}; stderr:\n{proc.stderr[-2000:]}")
    return _last_json(proc.stdout, proc.stderr, script)


async def arun_node(script: str, *args: str, timeout: float = 30.0) -> dict[str, Any]:
    """`run_node` for async tests; the process is killed if `timeout` passes."""
    with anyio.fail_after(timeout):
        proc = await anyio.run_process(
            _command(script, args), cwd=REPO_ROOT, env=node_env(), check=False
        )
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise AssertionError(f"{script} exited {proc.returncode}; stderr:\n{stderr[-2000:]}")
    return _last_json(stdout, stderr, script)


@dataclass
class NodeProcess:
    """A running Node helper: its PID and the object of its ``ready`` line."""

    pid: int
    ready: Mapping[str, Any]
    process: anyio.abc.Process


@asynccontextmanager
async def open_node(
    script: str, *args: str, ready_timeout: float = 20.0
) -> AsyncIterator[NodeProcess]:
    """Start a long-running helper; yield once it printed ``{"ready": true, ...}``.

    On exit the process gets SIGTERM (then SIGKILL after 3 s), by its PID only.
    """
    process = await anyio.open_process(
        _command(script, args),
        cwd=REPO_ROOT,
        env=node_env(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        buffer = b""
        ready: dict[str, Any] | None = None
        with anyio.fail_after(ready_timeout):
            while ready is None:
                try:
                    buffer += await process.stdout.receive()
                except anyio.EndOfStream:
                    raise AssertionError(f"{script} exited before it was ready") from None
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        value = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(value, dict) and value.get("ready"):
                        ready = value
        yield NodeProcess(process.pid, ready, process)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)


async def _stop(process: anyio.abc.Process) -> None:
    if process.returncode is None:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        with anyio.move_on_after(3):
            await process.wait()
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    await process.aclose()
