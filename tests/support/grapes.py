"""Real grapes for integration tests: start, wait until they work, always clean up.

```python
from support.grapes import running_grapes

with running_grapes(2) as grapes:          # sync; usable from any test or script
    url = grapes[0].url                    # "http://127.0.0.1:<api port>"
```
or, in a test module, the session-scoped pytest fixture::

    from support.grapes import grapes  # noqa: F401  (registers the fixture)

or `shared_grapes()`: one pair per test process, started on first use and stopped when
the process exits (the `grapes` fixture uses it, so a session starts grapes once).

Each grape runs the challenge's command, ``grape --dp A --aph B --bn '127.0.0.1:C,...'``,
plus ``-b 127.0.0.1``, on free loopback ports; every grape bootstraps from all the
others. "Ready" means every HTTP API answers a lookup *and* an item put on the first
grape can be read from every other one (the DHT is joined). Processes are stopped by
their PID (SIGTERM, then SIGKILL), in a ``finally``.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, NamedTuple

import pytest

from support.node import NODE_MODULES, REPO_ROOT, node_env, require_node
from support.ports import free_port

__all__ = ["Grape", "grape_call", "grapes", "running_grapes", "shared_grapes"]

GRAPE_JS = NODE_MODULES / "grenache-grape" / "bin" / "grape.js"


class Grape(NamedTuple):
    """One running grape."""

    url: str
    """Its HTTP API, e.g. ``http://127.0.0.1:30001`` (what `GrenacheTransport` takes)."""
    dht_port: int
    """Its UDP DHT port (``--dp``)."""
    api_port: int
    """Its HTTP API port (``--aph``)."""
    pid: int
    """The grape process id."""


def grape_call(url: str, op: str, data: Any, *, timeout: float = 2.0) -> Any:
    """Call a grape's API synchronously; return the parsed reply (None for an empty body)."""
    body = json.dumps({"rid": str(uuid.uuid4()), "data": data}).encode()
    req = urllib.request.Request(f"{url}/{op}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode()
    return json.loads(text) if text else None


def _wait_ready(grapes: list[Grape], procs: list[subprocess.Popen[bytes]], deadline: float) -> None:
    pending = list(grapes)
    while pending:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"grape {proc.args!r} exited with {proc.returncode}")
        grape = pending[0]
        try:
            if isinstance(grape_call(grape.url, "lookup", "ping", timeout=0.5), list):
                pending.pop(0)
                continue
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"grape {grape.url} did not answer")
        time.sleep(0.05)
    if len(grapes) < 2:
        return
    # The DHT is joined when a value put on one grape can be read from the others.
    value = f"grape-ready-{uuid.uuid4()}"
    while True:
        try:
            key = grape_call(grapes[0].url, "put", {"v": value})
            if isinstance(key, str) and all(
                isinstance(grape_call(g.url, "get", key), dict) for g in grapes[1:]
            ):
                return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("grapes did not join one DHT")
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, however it dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def running_grapes(
    n: int = 2, *, ready_timeout: float = 20.0, extra_args: Sequence[str] = ()
) -> Iterator[list[Grape]]:
    """Start `n` grapes bootstrapped from one another; yield them once they are ready.

    `extra_args` go to every grape's command line (e.g. ``["--dht_maxValues", "5000"]``).

    Raises:
        pytest.fail.Exception: node or node_modules is missing (run ``make setup``).
        TimeoutError: the grapes did not become ready within `ready_timeout` seconds.
    """
    node = require_node()
    ports = [(free_port(udp=True), free_port()) for _ in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    grapes: list[Grape] = []
    with ExitStack() as stack:
        try:
            for i, (dht_port, api_port) in enumerate(ports):
                bootstrap = ",".join(f"127.0.0.1:{d}" for j, (d, _) in enumerate(ports) if j != i)
                log = stack.enter_context(tempfile.TemporaryFile(prefix=f"grape-{dht_port}-"))
                cmd = [node, str(GRAPE_JS), "--dp", str(dht_port), "--aph", str(api_port)]
                cmd += ["--bn", bootstrap, "-b", "127.0.0.1", *extra_args]
                proc = subprocess.Popen(
                    cmd,
                    cwd=REPO_ROOT,
                    env=node_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
                procs.append(proc)
                grapes.append(Grape(f"http://127.0.0.1:{api_port}", dht_port, api_port, proc.pid))
            _wait_ready(grapes, procs, time.monotonic() + ready_timeout)
            yield grapes
        finally:
            for proc in procs:
                _stop(proc)


_shared: list[Grape] = []
_shared_stack = ExitStack()


def shared_grapes() -> list[Grape]:
    """Two grapes shared by the whole process: started on first call, stopped at exit.

    Tests using them must use unique service names (grapes remember names for ever).
    """
    if not _shared:
        started = _shared_stack.enter_context(running_grapes(2))
        atexit.register(_shared_stack.close)
        _shared.extend(started)
    return list(_shared)


@pytest.fixture(scope="session")
def grapes() -> list[Grape]:
    """Two real grapes shared by the session (see `shared_grapes`)."""
    return shared_grapes()
