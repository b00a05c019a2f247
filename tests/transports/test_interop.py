"""Interop with the real thing: grenache-grape, grenache-nodejs-link and -http (Node 20).

Two real grapes (shared by the session); Node peers run the helper scripts of
`tests/node/`. Missing node_modules fails with "run `make setup`", never a skip.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest
from support.grapes import Grape, grapes  # noqa: F401  (the session fixture)
from support.node import arun_node, open_node
from support.ports import free_port

from transports import JSON, RemoteError, dht_key
from transports.grenache import GrapeLink, GrenacheTransport

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def unique(prefix: str) -> str:
    return f"{prefix}-{free_port()}-{anyio.current_time():.6f}"


@asynccontextmanager
async def python_service(grape: Grape, name: str, tag: str) -> AsyncIterator[int]:
    """Serve `name` from a Python peer announced through `grape`; yield its port."""

    async def handler(payload: JSON) -> JSON:
        if isinstance(payload, dict) and "error" in payload:
            raise RemoteError(payload["error"])
        return {"echo": payload, "server": tag}

    async with GrenacheTransport(grape.url) as transport, anyio.create_task_group() as tg:
        port = await tg.start(partial(transport.serve, {name: handler}))
        yield port
        tg.cancel_scope.cancel()


async def node_client(grape: Grape, name: str, mode: str, payload: JSON, *extra: str) -> JSON:
    out = await arun_node(
        "rpc_client.js",
        *("--grape", grape.url, "--name", name, "--mode", mode),
        *("--payload", json.dumps(payload), *extra),
    )
    assert out["ok"], out
    return out["result"]


async def test_node_client_calls_python_service_with_request_and_map(
    grapes: list[Grape],  # noqa: F811
) -> None:
    name = unique("py-svc")
    async with (
        python_service(grapes[0], name, "a") as port_a,
        python_service(grapes[1], name, "b") as port_b,
    ):
        reply = await node_client(grapes[1], name, "request", {"x": [1, "two"]})
        assert reply["echo"] == {"x": [1, "two"]}
        assert reply["server"] in ("a", "b")
        replies = await node_client(grapes[0], name, "map", "hello")
        assert sorted(r["server"] for r in replies) == ["a", "b"]
        assert all(r["echo"] == "hello" for r in replies)
        gz = await node_client(grapes[0], name, "request", "z" * 3000, "--compress", "1")
        assert gz["echo"] == "z" * 3000
        # Errors reach Node as its Error message, verbatim.
        out = await arun_node(
            "rpc_client.js",
            *("--grape", grapes[0].url, "--name", name, "--mode", "request"),
            *("--payload", json.dumps({"error": "ERR_APP: nope"})),
        )
        assert out == {"ok": False, "error": "ERR_APP: nope"}
        assert port_a != port_b


async def test_python_client_calls_node_server(grapes: list[Grape]) -> None:  # noqa: F811
    name = unique("node-svc")
    async with (
        open_node(
            "rpc_server.js", "--grape", grapes[0].url, "--name", name, "--port", str(free_port())
        ) as node,
        GrenacheTransport(grapes[1].url) as client,
    ):
        port = node.ready["port"]
        reply = await client.request(name, {"q": [1, 2]})
        assert reply == {"echo": {"q": [1, 2]}, "server": "node", "port": port}
        with pytest.raises(RemoteError) as info:
            await client.request(name, {"error": "ERR_NODE: refused"})
        assert info.value.message == "ERR_NODE: refused"
        async with python_service(grapes[1], name, "py"):
            results = await client.map(name, "both")
            servers = sorted(str(r.data["server"]) for r in results if r.ok)
            assert servers == ["node", "py"], results
    async with (
        open_node(
            "rpc_server.js",
            "--grape",
            grapes[0].url,
            "--name",
            name + "-gz",
            "--port",
            str(free_port()),
        ),
        GrenacheTransport(grapes[1].url, compress=True) as gz_client,
    ):
        assert (await gz_client.request(name + "-gz", "g" * 2000))["echo"] == "g" * 2000


async def test_put_and_get_across_python_and_node(grapes: list[Grape]) -> None:  # noqa: F811
    value_py = f"from python {unique('v')} ünïcödé"
    value_node = f"from node {unique('v')}"
    async with GrenacheTransport(grapes[0].url) as transport:
        key_py = await transport.put(value_py)
        assert key_py == dht_key(value_py)
        got = await arun_node("link.js", "--grape", grapes[1].url, "--op", "get", "--key", key_py)
        assert got["ok"], got
        assert got["result"]["v"] == value_py

        put = await arun_node(
            "link.js", "--grape", grapes[1].url, "--op", "put", "--value", value_node
        )
        assert put == {"ok": True, "result": dht_key(value_node)}
        assert await transport.get(put["result"]) == value_node
        # The same value put from Python lands under the same key.
        assert await transport.put(value_node) == put["result"]
        assert await transport.get(dht_key(unique("never stored"))) is None


async def test_python_announce_is_found_by_node_lookup_on_the_other_grape(
    grapes: list[Grape],  # noqa: F811
) -> None:
    name = unique("announced")
    async with python_service(grapes[0], name, "a") as port:
        out = await arun_node("link.js", "--grape", grapes[1].url, "--op", "lookup", "--name", name)
        assert out == {"ok": True, "result": [f"127.0.0.1:{port}"]}


async def test_map_with_one_dead_announced_peer_returns_the_live_replies(
    grapes: list[Grape],  # noqa: F811
) -> None:
    name = unique("half-dead")
    dead_port = free_port()
    link = GrapeLink(grapes[0].url)
    try:
        await link.announce(name, dead_port)
    finally:
        await link.aclose()
    async with (
        python_service(grapes[0], name, "a"),
        python_service(grapes[1], name, "b"),
        GrenacheTransport(grapes[1].url) as client,
    ):
        results = await client.map(name, "ping", timeout=5)
        assert len(results) == 3
        live = sorted(str(r.data["server"]) for r in results if r.ok)
        assert live == ["a", "b"]
        (dead,) = [r for r in results if not r.ok]
        assert dead.peer == f"127.0.0.1:{dead_port}"
        assert str(dead.error).startswith("ERR_CONNECTION")
        # request skips the refusing peer and always reaches a live one.
        for _ in range(5):
            assert (await client.request(name, 1))["echo"] == 1
        # Node's map, by contrast, fails as a whole on the dead peer.
        out = await arun_node(
            "rpc_client.js", "--grape", grapes[1].url, "--name", name, "--mode", "map"
        )
        assert out["ok"] is False
