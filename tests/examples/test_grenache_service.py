"""examples/grenache_service.py on real grapes, called from Python and from Node.

The grapes are the session's shared pair (tests/support/grapes.py), so every test uses
its own service name (grapes remember names for ever). The Node client is the snippet
of docs/transports.md, run as written but for the grape URL and the service name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import pytest
from support.examples import EXAMPLES
from support.grapes import Grape, grapes  # noqa: F401  (the session fixture)
from support.node import REPO_ROOT, arun_node, node_env, require_node
from support.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SCRIPT = EXAMPLES / "grenache_service.py"
DOC = REPO_ROOT / "docs" / "transports.md"


def unique(prefix: str) -> str:
    return f"{prefix}-{free_port()}"


async def run_example(*args: str) -> str:
    """Run the example to completion; return its stdout."""
    with anyio.fail_after(60):
        proc = await anyio.run_process([sys.executable, str(SCRIPT), *args], check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def check_client_output(out: str, server: str) -> str:
    """The client's five lines; returns the DHT key of the quote the service stored."""
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["request", "get", "map", "refused", "put"]
    reply = json.loads(lines[0].removeprefix("request: "))
    quote = {"market": "BTC-USD", "bid": "64000.00", "ask": "64000.50"}
    assert reply["quote"] == quote
    assert reply["server"] == server
    assert json.loads(lines[1].removeprefix("get: ")) == quote
    assert '"market": "ETH-USD"' in lines[2]
    assert lines[3] == 'refused: ERR_UNKNOWN_MARKET: "DOGE-EUR"'
    assert lines[4].endswith(" hello from a python client")
    key: str = reply["key"]
    return key


async def test_serve_and_call_in_one_process(grapes: list[Grape]) -> None:  # noqa: F811
    out = await run_example("both", "--grape", grapes[0].url, "--name", unique("ticker"))
    check_client_output(out, server=re.findall(r'"server": "([^"]+)"', out)[0])


@asynccontextmanager
async def example_service(grape: Grape, name: str) -> AsyncIterator[tuple[int, int]]:
    """Run ``grenache_service.py serve`` until the block ends; yield (pid, port).

    On exit it gets SIGINT, as Ctrl-C would send, and must end with 130 within 10 s."""
    process = await anyio.open_process(
        [sys.executable, str(SCRIPT), "serve", "--grape", grape.url, "--name", name],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with anyio.fail_after(20):
            while b"\n" not in buffer:
                buffer += await process.stdout.receive()
        line = buffer.decode().splitlines()[0]
        pattern = rf"serving {name} on port (\d+) through {re.escape(grape.url)} \(Ctrl-C stops\)"
        match = re.fullmatch(pattern, line)
        assert match, line
        yield process.pid, int(match.group(1))
        os.kill(process.pid, signal.SIGINT)
        with anyio.fail_after(10):
            assert await process.wait() == 130
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()
            await process.aclose()


def docs_node_client(grape_url: str, name: str) -> str:
    """The Node client of docs/transports.md, pointed at this test's grape and name."""
    blocks: list[str] = re.findall(r"```js\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    [block] = blocks
    assert "'http://127.0.0.1:30001'" in block
    assert "'example_ticker'" in block
    return block.replace("'http://127.0.0.1:30001'", f"'{grape_url}'").replace(
        "'example_ticker'", f"'{name}'"
    )


async def test_python_and_node_clients_of_the_service(
    grapes: list[Grape],  # noqa: F811
    tmp_path: Path,
) -> None:
    name = unique("ticker")
    async with example_service(grapes[0], name) as (pid, port):
        # The Python client, through the other grape (it waits for the announce).
        out = await run_example("client", "--grape", grapes[1].url, "--name", name)
        key = check_client_output(out, server=f"python-{pid}")
        assert f"map: 127.0.0.1:{port} " in out

        # The docs' Node client (grenache-nodejs-http), as written.
        script = tmp_path / "call_ticker.js"
        script.write_text(docs_node_client(grapes[1].url, name), encoding="utf-8")
        with anyio.fail_after(30):
            node = await anyio.run_process(
                [require_node(), str(script)], cwd=REPO_ROOT, env=node_env(), check=False
            )
        assert node.returncode == 0, node.stdout + node.stderr
        reply = json.loads(node.stdout.decode().strip())
        assert reply["quote"]["market"] == "BTC-USD"
        assert reply["server"] == f"python-{pid}"

        # Node's map and error reply, and the quote the service put, read from Node.
        common = ("--grape", grapes[1].url, "--name", name)
        mapped = await arun_node(
            "rpc_client.js", *common, "--mode", "map", "--payload", '{"market": "ETH-USD"}'
        )
        assert mapped["ok"], mapped
        assert [r["quote"]["market"] for r in mapped["result"]] == ["ETH-USD"]
        refused = await arun_node(
            "rpc_client.js", *common, "--mode", "request", "--payload", '{"market": "X"}'
        )
        assert refused == {"ok": False, "error": 'ERR_UNKNOWN_MARKET: "X"'}
        stored = await arun_node("link.js", "--grape", grapes[1].url, "--op", "get", "--key", key)
        assert stored["ok"], stored
        assert json.loads(stored["result"]["v"])["market"] == "BTC-USD"
