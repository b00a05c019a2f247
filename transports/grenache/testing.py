"""Local grapes for tests and benchmarks: start them, wait until they work, clean up.

```python
from transports.grenache.testing import running_grapes

with running_grapes(2, grape=["node", "node_modules/grenache-grape/bin/grape.js"]) as grapes:
    url = grapes[0].url                    # "http://127.0.0.1:<api port>"
```
Each grape runs the challenge's command, ``grape --dp A --aph B --bn '127.0.0.1:C,...'``,
plus ``-b 127.0.0.1``, on free loopback ports; every grape bootstraps from all the
others. "Ready" means every HTTP API answers a lookup *and* an item put on the first
grape can be read from every other one (the DHT is joined). Processes are stopped by
their PID (SIGTERM, then SIGKILL), in a ``finally``, and get SIGTERM if this process
dies first (Linux). Blocking and synchronous on purpose: usable from any test runner,
fixture or script, before an event loop starts.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, NamedTuple

__all__ = ["Grape", "free_port", "grape_call", "restarted_grape", "running_grapes"]

_handed_out: set[int] = set()


def free_port(*, udp: bool = False) -> int:
    """Return a port free on 127.0.0.1 for TCP (and for UDP too when `udp` is True).

    The port is released before returning, so another process could take it first; the
    ports handed out by this process are remembered and never handed out twice.

    Raises:
        RuntimeError: no free port was found in 200 tries.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if port in _handed_out:
                continue
            if udp:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                    try:
                        dgram.bind(("127.0.0.1", port))
                    except OSError:
                        continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


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
    """In the child: get SIGTERM when this process dies, however it dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _command(
    grape: Sequence[str], dht_port: int, api_port: int, bootstrap: Sequence[int],
    extra_args: Sequence[str],
) -> list[str]:  # fmt: skip
    """The challenge's command line, plus ``-b 127.0.0.1``."""
    peers = ",".join(f"127.0.0.1:{port}" for port in bootstrap)
    cmd = [*grape, "--dp", str(dht_port), "--aph", str(api_port)]
    return [*cmd, "--bn", peers, "-b", "127.0.0.1", *extra_args]


def _spawn(
    cmd: list[str], env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None, log: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


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
    n: int = 2,
    *,
    grape: Sequence[str] = ("grape",),
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 20.0,
) -> Iterator[list[Grape]]:
    """Start `n` grapes bootstrapped from one another; yield them once they are ready.

    Args:
        n: how many grapes.
        grape: the command that runs grape, e.g. ``["node", ".../grape.js"]``.
        env: the grapes' environment (default: this process's).
        cwd: the grapes' working directory.
        extra_args: added to every grape's command line (e.g. ``["--dht_maxValues", "5000"]``).
        ready_timeout: seconds the grapes may take to answer and join one DHT.

    Raises:
        RuntimeError: a grape exited before it was ready.
        TimeoutError: the grapes did not become ready within `ready_timeout` seconds.
    """
    ports = [(free_port(udp=True), free_port()) for _ in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    grapes: list[Grape] = []
    with ExitStack() as stack:
        try:
            for i, (dht_port, api_port) in enumerate(ports):
                bootstrap = [d for j, (d, _) in enumerate(ports) if j != i]
                log = stack.enter_context(tempfile.TemporaryFile(prefix=f"grape-{dht_port}-"))
                cmd = _command(grape, dht_port, api_port, bootstrap, extra_args)
                proc = _spawn(cmd, env, cwd, log)
                procs.append(proc)
                grapes.append(Grape(f"http://127.0.0.1:{api_port}", dht_port, api_port, proc.pid))
            _wait_ready(grapes, procs, time.monotonic() + ready_timeout)
            yield grapes
        finally:
            for proc in procs:
                _stop(proc)


@contextmanager
def restarted_grape(
    dead: Grape,
    peers: Sequence[Grape],
    *,
    grape: Sequence[str] = ("grape",),
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 20.0,
) -> Iterator[Grape]:
    """Start a grape again on the ports of `dead`, as an operator restarts one that died.

    Same flags as `running_grapes` (bootstrapped from `peers`); yields the new `Grape`
    (its own PID) once its API answers, and stops it by PID on the way out. It does not
    wait for the DHT to be joined: what the other grapes make of a restarted peer is
    what the caller wants to see.

    Raises:
        RuntimeError: the grape exited before it answered (e.g. its ports are taken).
        TimeoutError: its API did not answer within `ready_timeout` seconds.
    """
    cmd = _command(grape, dead.dht_port, dead.api_port, [p.dht_port for p in peers], extra_args)
    with tempfile.TemporaryFile(prefix=f"grape-{dead.dht_port}-") as log:
        proc = _spawn(cmd, env, cwd, log)
        try:
            again = Grape(dead.url, dead.dht_port, dead.api_port, proc.pid)
            _wait_ready([again], [proc], time.monotonic() + ready_timeout)
            yield again
        finally:
            _stop(proc)
