"""examples/custom_transport.py: it runs as a reader runs it, and the wrapper meters
without changing anything (the contract suite also runs on it: "metered" in
tests/transports/transport_adapters.py)."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from typing import Any

import anyio
import pytest
from support.examples import EXAMPLES, load_example

from transports import JSON, MemoryNetwork, MemoryTransport, RemoteError, Transport

example = load_example("custom_transport")


def test_the_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_transport.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused: ERR_UNKNOWN_MARKET: DOGE-EUR" in proc.stdout
    assert "request: 5 calls, errors: 1 NoPeersError, 1 RemoteError" in proc.stdout
    assert "handle:quote: 5 calls, errors: 1 RemoteError" in proc.stdout


@pytest.mark.anyio
async def test_every_call_is_counted_and_observed_and_nothing_is_changed() -> None:
    network = MemoryNetwork(seed=0)
    seen: list[tuple[str, str | None]] = []

    def observer(what: str, seconds: float, exc: BaseException | None) -> None:
        assert seconds >= 0
        seen.append((what, None if exc is None else type(exc).__name__))

    async def handler(payload: JSON) -> JSON:
        if payload == "no":
            raise RemoteError("ERR_NO: verbatim")
        return [payload, payload]

    server: Any = example.MeteredTransport(MemoryTransport(network))
    client: Any = example.MeteredTransport(MemoryTransport(network), observer=observer)
    assert issubclass(example.MeteredTransport, Transport)
    async with server, client, anyio.create_task_group() as tg:
        port = await tg.start(partial(server.serve, {"twice": handler}))
        assert isinstance(port, int)
        assert await client.request("twice", {"a": 1}) == [{"a": 1}, {"a": 1}]
        with pytest.raises(RemoteError) as info:
            await client.request("twice", "no")
        assert info.value.message == "ERR_NO: verbatim"  # the same exception, untouched
        [result] = await client.map("twice", 3)
        assert (result.data, result.error) == ([3, 3], None)
        key = await client.put("v")
        assert await client.get(key) == "v"
        tg.cancel_scope.cancel()
    assert seen == [
        ("request", None),
        ("request", "RemoteError"),
        ("map", None),
        ("put", None),
        ("get", None),
    ]
    stats = client.stats
    assert (stats["request"].calls, dict(stats["request"].errors)) == (2, {"RemoteError": 1})
    assert stats["request"].mean_ms > 0
    handled = server.stats["handle:twice"]
    assert (handled.calls, dict(handled.errors)) == (3, {"RemoteError": 1})
    # serve ended by cancellation: counted, not an error.
    assert (server.stats["serve"].calls, dict(server.stats["serve"].errors)) == (1, {})
    assert "request: 2 calls, errors: 1 RemoteError" in client.report()
    assert example.CallStats().mean_ms == 0.0
