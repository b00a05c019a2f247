"""The `dex` commands that use the network: head, book, watch, status, lookup, request, get.

Each opens a Grenache transport on the ``--grape`` URLs (it serves nothing, except `watch`),
runs one bounded async call (`exchange.tools._network`), prints the result and
returns the exit status; see `exchange.tools._dex`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from exchange.client.view import ladder_lines
from exchange.protocol import BadMessage, InvalidVersion, ReplayError
from exchange.runtime import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, print_json
from exchange.tools._network import (
    Status,
    fetch_book,
    fetch_verified_head,
    grenache_get,
    grenache_lookup,
    grenache_request,
    list_markets,
    network_status,
    now_ms,
)
from transports import RemoteError, Transport, TransportError, is_dht_key, open_transport

__all__ = [
    "EXPECTED",
    "book",
    "fail",
    "get",
    "head",
    "lookup",
    "markets",
    "request",
    "status",
    "watch",
    "with_transport",
]

if TYPE_CHECKING:  # the adapter (httptools) is imported only by the commands that use it
    from transports.grenache import GrapeLink, GrapeLinks

_T = TypeVar("_T")


def with_transport(args: argparse.Namespace, call: Callable[[Transport], Awaitable[_T]]) -> _T:
    """Run `call` on a transport through ``--grape``, the whole under ``--timeout``."""

    async def run() -> _T:
        transport = open_transport(
            "grenache", grape=args.grapes, grape_timeout=args.timeout, lookup_ttl=0.5
        )
        async with transport:
            with anyio.fail_after(args.timeout * 3):
                return await call(transport)

    return anyio.run(run)


def _grape_client(args: argparse.Namespace) -> GrapeLink | GrapeLinks:
    """A Grape client of ``--grape``: its one grape, or its several (with failover)."""
    from transports.grenache import GrapeLink, GrapeLinks

    if len(args.grapes) == 1:
        return GrapeLink(args.grapes[0], timeout=args.timeout)
    return GrapeLinks(args.grapes, timeout=args.timeout)


def fail(command: str, exc: BaseException, grape: str) -> int:
    """Print why `command` failed; return the exit status that says so."""
    if isinstance(exc, RemoteError):
        print(f"dex {command}: the peer answered with an error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(exc, TimeoutError):
        print(f"dex {command}: no answer in time through {grape}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if isinstance(exc, InvalidVersion):
        print(f"dex {command}: the version does not verify: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"dex {command}: {exc} (through grape {grape})", file=sys.stderr)
    return EXIT_UNREACHABLE


EXPECTED = (TransportError, TimeoutError, BadMessage, InvalidVersion, ValueError)


def head(args: argparse.Namespace) -> int:
    try:
        found = with_transport(args, lambda t: fetch_verified_head(t, args.timeout, args.spec))
    except EXPECTED as exc:
        return fail("head", exc, args.grape)
    if args.json:
        print_json(found.to_json())
    else:
        print(f"seq {found.head.seq}")
        print(f"root {found.head.root or '-'}")
        print(f"book {found.book or 'empty'}")
        print(f"key  {found.head.key}  (head and root signed by it, verified)")
    return EXIT_OK


def book(args: argparse.Namespace) -> int:
    if args.root is not None and not is_dht_key(args.root):
        print(f"dex book: --root must be a 40-hex root hash, got {args.root!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        view = with_transport(
            args,
            lambda t: fetch_book(
                t, root=args.root, depth=args.depth, timeout=args.timeout * 2, spec=args.spec
            ),
        )
    except EXPECTED as exc:
        return fail("book", exc, args.grape)
    if args.json:
        print_json(view.to_json())
        return EXIT_OK
    print(f"seq {view.seq}  root {view.root or '-'}")
    print(f"book {view.book_hash or 'empty'} ({view.ladder.orders} orders resting, verified)")
    print()
    for line in ladder_lines(view.ladder):
        print(line)
    return EXIT_OK


def watch(args: argparse.Namespace) -> int:
    from exchange.client import ClientArgs, run_client

    client = ClientArgs(
        client_id=f"dex-watch-{os.getpid()}",
        grape=args.grape,
        once=args.once,
        json=args.json,
        plain=args.plain,
        timeout=max(args.timeout, 30.0) if args.once else 30.0,
        metrics_port=args.metrics_port,
        market=args.market,
    )

    async def run() -> int:
        transport = open_transport("grenache", grape=args.grapes, grape_timeout=args.timeout)
        async with transport:
            return await run_client(client, transport, sys.stdout)

    return anyio.run(run)


def lookup(args: argparse.Namespace) -> int:
    async def call(transport: Transport) -> list[str]:
        link = _grape_client(args)
        try:
            return await grenache_lookup(link, args.name)
        finally:
            await link.aclose()

    try:
        peers = with_transport(args, call)
    except EXPECTED as exc:
        return fail("lookup", exc, args.grape)
    if args.json:
        print_json(peers)
    else:
        for peer in peers:
            print(peer)
    if not peers:
        print(f"dex lookup: nobody is announced as {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def request(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        print(f"dex request: the payload is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        reply = with_transport(
            args, lambda t: grenache_request(t, args.name, payload, args.timeout)
        )
    except EXPECTED as exc:
        return fail("request", exc, args.grape)
    print_json(reply)
    return EXIT_OK


def get(args: argparse.Namespace) -> int:
    if not is_dht_key(args.key):
        print(f"dex get: a key is 40 lowercase hex characters, got {args.key!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        value = with_transport(args, lambda t: grenache_get(t, args.key))
    except EXPECTED as exc:
        return fail("get", exc, args.grape)
    if value is None:
        print(f"dex get: {args.key} is not in the DHT", file=sys.stderr)
        return EXIT_FAILED
    print(value)
    return EXIT_OK


def markets(args: argparse.Namespace) -> int:
    try:
        found = with_transport(args, lambda t: list_markets(t, args.timeout))
    except EXPECTED as exc:
        return fail("markets", exc, args.grape)
    if args.json:
        print_json(
            {
                "markets": [
                    {"peer": peer, **_object(info.to_wire())} for peer, info in found.markets
                ],
                "problems": found.problems,
            }
        )
    else:
        for peer, info in found.markets:
            spec = info.spec
            print(
                f"{info.market:20} seq {info.head.seq:<8} root {info.head.root or '-':40}"
                f"  tick {spec['tickSize']} lot {spec['lotSize']}  {peer}"
            )
        for peer, problem in sorted(found.problems.items()):
            print(f"dex markets: {peer}: {problem}", file=sys.stderr)
    if not found.markets:
        print("dex markets: no matcher answered `markets`", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _object(wire: Any) -> dict[str, Any]:
    assert isinstance(wire, dict)
    return wire


def _journal_status(path: str) -> dict[str, Any]:
    from exchange.tools._journal_view import file_head, open_journal, orders_per_second

    try:
        with open_journal(path) as journal:
            return {
                "db": str(Path(path)),
                "head": file_head(journal),
                "acked": journal.acked(),
                "ordersPerSecond": round(orders_per_second(journal, now_ms=now_ms()), 2),
            }
    except ReplayError as exc:
        return {"db": str(Path(path)), "error": str(exc)}


def status(args: argparse.Namespace) -> int:
    async def call(transport: Transport) -> Status:
        link = _grape_client(args)
        try:
            return await network_status(link, transport, args.timeout, args.spec)
        finally:
            await link.aclose()

    try:
        found = with_transport(args, call)
    except EXPECTED as exc:
        return fail("status", exc, args.grape)
    journal = _journal_status(args.db)
    matcher = found.head.seq if found.head is not None else None
    backlog = journal["head"] - matcher if matcher is not None and "head" in journal else None
    if args.json:
        print_json(
            {
                "grape": found.grape,
                "services": [s.to_json() for s in found.services],
                "matcherHead": found.head.to_wire() if found.head is not None else None,
                "matcherHeadVerified": found.head is not None and found.head_problem is None,
                "matcherHeadProblem": found.head_problem,
                "matcherError": found.head_error,
                "journal": journal,
                "backlog": backlog,
            }
        )
    else:
        _print_status(found, journal, backlog)
    workers_up = all(s.answering for s in found.services[:2]) and found.head is not None
    if not workers_up:
        return EXIT_UNREACHABLE
    return EXIT_FAILED if found.head_problem is not None else EXIT_OK


def _print_status(found: Status, journal: dict[str, Any], backlog: int | None) -> None:
    print(f"grape {found.grape}")
    for service in found.services:
        if not service.probed:
            print(f"  {service.name:18} {len(service.announced)} announced (clients; not asked)")
            continue
        dead = len(service.announced) - len(service.answering)
        line = f"  {service.name:18} {len(service.answering)} answering"
        if dead:
            line += f", {dead} announced but not answering (dead peers stay announced)"
        print(line)
        for peer in service.answering:
            also = service.shared.get(peer)
            note = f" (also announced as {also}: a dead peer's address?)" if also else ""
            print(f"      {peer}  ok{note}")
    if found.head is not None:
        print(f"matcher head   seq {found.head.seq}  root {found.head.root or '-'}")
        if found.head_problem is None:
            print(f"               signed by {found.head.key} (verified)")
        else:
            print(f"               NOT VERIFIED: {found.head_problem}")
    else:
        print(f"matcher head   unknown: {found.head_error}")
    if "error" in journal:
        print(f"journal        {journal['error']}")
        return
    print(
        f"journal head   seq {journal['head']}  (acked by the matcher: {journal['acked']})"
        f"  {journal['db']}"
    )
    if backlog is not None:
        print(f"backlog        {backlog} journaled, not yet in the matcher's book")
    print(f"orders/s       {journal['ordersPerSecond']} over the last minute")
