"""A Grenache service in Python and a client of it, with `transports` alone.

Run against the run book's two grapes (README, "The run book"):

    node_modules/.bin/grape --dp 20001 --aph 30001 --bn '127.0.0.1:20002'
    node_modules/.bin/grape --dp 20002 --aph 40001 --bn '127.0.0.1:20001'
    python examples/grenache_service.py serve                                 # terminal 1
    python examples/grenache_service.py client --grape http://127.0.0.1:40001  # terminal 2

or both in one process: ``python examples/grenache_service.py`` (mode ``both``).

The service, ``example_ticker``, answers ``{"market": "BTC-USD"}`` with a quote, stores
that quote in the DHT (``put``) and replies with its key too; an unknown market is an
error reply (``ERR_UNKNOWN_MARKET: ...``). It is a grenache-nodejs-http peer like any
other: a Node ``PeerRPCClient`` calls it (docs/transports.md shows one), and so does the
client here, which uses ``request``, ``map``, ``get`` and ``put``. Needs the Grenache
adapter's extra: ``pip install "distributed-exchange[grenache]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from transports import JSON, Handler, NoPeersError, RemoteError, Transport, open_transport

DEFAULT_GRAPE = "http://127.0.0.1:30001"
DEFAULT_NAME = "example_ticker"
QUOTES = {
    "BTC-USD": {"bid": "64000.00", "ask": "64000.50"},
    "ETH-USD": {"bid": "3100.10", "ask": "3100.40"},
}


def quote_handler(transport: Transport, server_id: str) -> Handler:
    """The service: a handler is a coroutine from JSON payload to JSON reply."""

    async def handle(payload: JSON) -> JSON:
        market = payload.get("market") if isinstance(payload, dict) else None
        if market not in QUOTES:
            # A RemoteError's message is the error reply, verbatim; a Node caller gets it
            # as its Error's message.
            raise RemoteError(f"ERR_UNKNOWN_MARKET: {json.dumps(market)}")
        quote = {"market": market, **QUOTES[market]}
        # Content-addressed: the same quote is stored once, under the same key, by
        # whichever peer puts it; readers check nothing but the key.
        key = await transport.put(json.dumps(quote, sort_keys=True))
        return {"quote": quote, "key": key, "server": server_id}

    return handle


async def serve(
    grape: str, name: str, port: int = 0, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED
) -> None:
    """Announce `name` through `grape` and answer until cancelled.

    Reports the port it listens on with ``task_status.started(port)``, once the name is
    announced (the service can be found), so ``await tg.start(serve, ...)`` waits for it.
    """
    async with (
        open_transport("grenache", grape=grape) as transport,
        anyio.create_task_group() as tg,
    ):
        handlers = {name: quote_handler(transport, f"python-{os.getpid()}")}
        task_status.started(await tg.start(partial(transport.serve, handlers, port=port)))


async def serve_forever(grape: str, name: str, port: int) -> None:
    """The ``serve`` mode: serve, say where, and run until interrupted."""
    async with anyio.create_task_group() as tg:
        bound = await tg.start(partial(serve, grape, name, port))
        print(f"serving {name} on port {bound} through {grape} (Ctrl-C stops)", flush=True)


async def request_when_found(
    transport: Transport, name: str, payload: JSON, *, wait: float
) -> JSON:
    """`request`, retried while nobody is announced yet (a service may start later, or
    its announce may not have reached this grape yet)."""
    with anyio.fail_after(wait):
        while True:
            try:
                return await transport.request(name, payload, timeout=5)
            except NoPeersError:
                await anyio.sleep(0.2)


async def client(grape: str, name: str, wait: float) -> None:
    """Call the service every way the interface offers; print what comes back."""
    async with open_transport("grenache", grape=grape) as transport:
        reply = await request_when_found(transport, name, {"market": "BTC-USD"}, wait=wait)
        print("request:", json.dumps(reply, sort_keys=True))

        stored = await transport.get(reply["key"])  # the quote the service put
        print("get:", stored if stored is not None else "(gone: the DHT is a bounded cache)")

        for result in await transport.map(name, {"market": "ETH-USD"}, timeout=5):
            answer = json.dumps(result.data, sort_keys=True) if result.ok else result.error
            print("map:", result.peer, answer)

        try:
            await transport.request(name, {"market": "DOGE-EUR"}, timeout=5)
        except RemoteError as exc:
            print("refused:", exc.message)

        key = await transport.put("hello from a python client")
        print("put:", key, await transport.get(key))


async def both(grape: str, name: str, wait: float) -> None:
    """Serve and call in one process (through the grape, as two peers would)."""
    async with anyio.create_task_group() as tg:
        await tg.start(partial(serve, grape, name))
        await client(grape, name, wait)
        tg.cancel_scope.cancel()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("mode", nargs="?", choices=["serve", "client", "both"], default="both")
    parser.add_argument("--grape", default=DEFAULT_GRAPE, help=f"default {DEFAULT_GRAPE}")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"default {DEFAULT_NAME}")
    parser.add_argument("--port", type=int, default=0, help="serve: 0 picks a free port")
    parser.add_argument("--wait", type=float, default=10.0, help="client: seconds to find it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.mode == "serve":
            anyio.run(serve_forever, args.grape, args.name, args.port)
        elif args.mode == "client":
            anyio.run(client, args.grape, args.name, args.wait)
        else:
            anyio.run(both, args.grape, args.name, args.wait)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
