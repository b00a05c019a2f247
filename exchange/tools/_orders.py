"""`dex order`, `dex orders` and `dex fills`: one client's orders and trades.

Two sources, one answer format (docs/operations.md, "dex"):

- the network (default, ``-g URL``): the matcher's head, verified, and its version read
  from the DHT and verified as `dex book` does. Its book holds every resting order, so
  `dex orders` is exact from anywhere; the history (`dex order` when the order does not
  rest, `dex fills`) comes from the event pages of the versions walked back through
  ``prev``, as far as the DHT still holds them (``--versions N``): the output says from
  which seq when it did not reach the first command.
- the journal (``--db PATH``, on the sequencer's host): replayed through the core, which
  gives exactly the matcher's book and every event since seq 1: complete and exact.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from exchange.client.view import trade_time
from exchange.protocol import AuthFailed, Entry, InvalidVersion, ReplayError, verify_head
from exchange.runtime import EXIT_FAILED, EXIT_OK, EXIT_USAGE, print_json
from exchange.tools._history import (
    CANCELLED,
    FILLED,
    REJECTED,
    RESTING,
    UNKNOWN,
    ClientHistory,
    OrderLife,
    life_record,
    open_order_record,
    steps_json,
)
from exchange.tools._journal_view import open_journal
from exchange.tools._network import fetch_head
from exchange.tools._replay import replay_journal
from exchange.versions import VersionReader
from orderbook_core import DEFAULT_SPEC, Event, MarketSpec, RestingOrder
from transports import Transport

__all__ = ["DEFAULT_VERSIONS", "fills", "order", "orders"]

DEFAULT_VERSIONS = 200
"""Versions `dex order` and `dex fills` walk back through on the network, at most."""


@dataclass(frozen=True, slots=True)
class Found:
    """A client's history and resting orders as of `seq`, and where they came from."""

    history: ClientHistory
    resting: dict[str, RestingOrder]
    seq: int
    source: str

    def source_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "asOf": self.seq,
            "historyFrom": self.history.first_seq or self.seq + 1,
            "complete": self.history.complete,
        }


# --------------------------------------------------------------------------- sources


def from_journal(
    path: str, client_id: str, order_id: str | None, spec: MarketSpec = DEFAULT_SPEC
) -> Found:
    """Replay the journal at `path`; keep `client_id`'s history (or one order's).

    Raises:
        ReplayError: not a journal, or an entry the core refuses.
    """
    history = ClientHistory(client_id, order_id)

    def seen(entry: Entry, events: tuple[Event, ...]) -> None:
        history.feed(entry.seq, entry.ts, entry.wire, events)

    result = replay_journal(path, spec, on_entry=seen)
    if history.first_seq is None and result.seq:
        history.first_seq = 1
    resting = {o.order_id: o for o in result.book.orders() if o.client_id == client_id}
    history.settle(resting)
    return Found(history, resting, result.seq, "journal")


def journaled(path: str, client_id: str, order_id: str) -> bool:
    """Whether the journal holds a new order `order_id` of `client_id`. O(log n)."""
    with open_journal(path) as journal:
        return journal.find(client_id, "new", order_id) is not None


def journaled_cancel(path: str, client_id: str, order_id: str) -> int | None:
    """The seq of a journaled cancel of `order_id`, if any (of an order never placed, it
    was rejected: there was nothing to cancel). O(log n)."""
    with open_journal(path) as journal:
        entry = journal.find(client_id, "cancel", order_id)
    return None if entry is None else entry.seq


async def from_network(
    transport: Transport,
    client_id: str,
    order_id: str | None,
    *,
    timeout: float,
    versions: int,
    spec: MarketSpec = DEFAULT_SPEC,
) -> Found:
    """The head's version (book and, when `versions` > 0, history) from the DHT.

    The head's signature is checked, and every root read must be signed by the same
    matcher key and hash to its key (`VersionReader`).

    Raises:
        InvalidVersion: the head or a version does not verify.
        transports.TransportError, BadMessage: the head could not be asked.
        TimeoutError: the DHT did not answer in time.
    """
    head = await fetch_head(transport, timeout, spec)
    try:
        key = verify_head(head, None)
    except AuthFailed as exc:
        raise InvalidVersion(f"orderbook_head: {exc}") from None
    history = ClientHistory(client_id, order_id)
    if head.root is None:
        return Found(history, {}, head.seq, "network")
    reader = VersionReader(transport, spec, matcher_key=key)
    with anyio.fail_after(timeout * 2):
        version = await reader.fetch(head.root)
    resting = {o.order_id: o for o in version.book.orders() if o.client_id == client_id}
    if versions > 0:
        await _walk(reader, head.root, history, versions, timeout)
    history.settle(resting)
    return Found(history, resting, version.root.seq, "network")


async def _walk(
    reader: VersionReader, root_hash: str, history: ClientHistory, most: int, timeout: float
) -> None:
    """Feed `history` the events of up to `most` versions, newest first read, fed in
    seq order; stops early at the first version, or where the DHT no longer has one."""
    read: list[tuple[int, int, Mapping[int, tuple[int, dict[str, Any]]], list[Event]]] = []
    at: str | None = root_hash
    while at is not None and len(read) < most:
        try:
            with anyio.fail_after(timeout):
                root, events = await reader.fetch_events(at)
                commands: dict[int, tuple[int, dict[str, Any]]] = {}
                if root.commands is not None:
                    _, entries = await reader.fetch_commands(at)
                    commands = {e.seq: (e.ts, e.wire) for e in entries}
        except InvalidVersion as exc:
            if "missing" not in str(exc) or not read:
                raise
            break  # gone from the DHT: the history read starts after it
        read.append((root.first, root.seq, commands, list(events)))
        at = root.prev
    for first, last, commands, events in reversed(read):
        by_seq: dict[int, list[Event]] = {}
        for event in events:
            by_seq.setdefault(event.seq, []).append(event)
        for seq in range(first, last + 1):
            ts, command = commands.get(seq, (None, None))
            history.feed(seq, ts, command, by_seq.get(seq, ()))


# --------------------------------------------------------------------------- commands


def _fetch(
    args: argparse.Namespace, command: str, order_id: str | None, versions: int
) -> Found | int:
    """The history from ``--db`` when given, else from the network (``-g``); or the exit
    status of the failure (printed)."""
    from exchange.tools._remote import EXPECTED, fail, with_transport

    try:
        if args.db is not None:
            return from_journal(args.db, args.client_id, order_id)
        return with_transport(
            args,
            lambda t: from_network(
                t,
                args.client_id,
                order_id,
                timeout=args.timeout,
                versions=versions,
                spec=args.spec,
            ),
        )
    except ReplayError as exc:
        print(f"dex {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EXPECTED as exc:
        return fail(command, exc, args.grape)


def order(args: argparse.Namespace) -> int:
    """`dex order CLIENT ORDER`: exit 0 when the order is known, 1 when it is not."""
    spec: MarketSpec = args.spec
    if args.db is not None:
        try:
            placed = journaled(args.db, args.client_id, args.order_id)
            cancel = None if placed else journaled_cancel(args.db, args.client_id, args.order_id)
        except ReplayError as exc:
            print(f"dex order: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not placed:  # never placed: no replay needed to say so
            return _unknown(args, cancel)
    found = _fetch(args, "order", args.order_id, args.versions)
    if isinstance(found, int):
        return found
    life = found.history.orders.get(args.order_id)
    if life is None or life.state == UNKNOWN:
        return _unknown(args, None, found, life)
    record = {**life_record(life, spec), **found.source_json()}
    if args.json:
        print_json(record)
    else:
        print(f"{args.client_id}/{args.order_id}  {summary(life, spec)}")
        print(f"  from {_source_text(found)}")
        for step in life.steps:
            print("  " + step_line(step, spec))
    return EXIT_OK


def _source_text(found: Found) -> str:
    """Where the answer comes from, and whether its history is complete."""
    if found.source == "journal":
        return f"the journal (seq 1..{found.seq}, complete)"
    if found.history.complete:
        return f"the network's versions (seq 1..{found.seq}, complete)"
    return (
        f"the network's versions (seq {found.history.first_seq or found.seq + 1}.."
        f"{found.seq}; older ones not read: --versions N, or --db on the sequencer's host)"
    )


def _unknown(
    args: argparse.Namespace,
    cancel_seq: int | None,
    found: Found | None = None,
    life: OrderLife | None = None,
) -> int:
    """Say the order is not known, and what was seen of it (a refused cancel)."""
    steps = [] if life is None else life.steps
    spec: MarketSpec = args.spec
    where = "the journal" if found is None else _source_text(found)
    if args.json:
        record: dict[str, Any] = {
            "clientId": args.client_id,
            "orderId": args.order_id,
            "state": "unknown",
            "history": steps_json(steps, spec),
        }
        if cancel_seq is not None:
            record["cancelRejectedAt"] = cancel_seq
        if found is not None:
            record.update(found.source_json())
        print_json(record)
        return EXIT_FAILED
    print(f"{args.client_id}/{args.order_id}  unknown: no such order in {where}")
    if cancel_seq is not None:
        print(f"  a cancel of it is journaled at seq {cancel_seq}: rejected (no such order)")
    for step in steps:
        print("  " + step_line(step, spec))
    print(
        "  (an order the sequencer refused is never journaled; one not confirmed in time "
        "may still arrive: ask again)"
    )
    return EXIT_FAILED


def orders(args: argparse.Namespace) -> int:
    """`dex orders CLIENT`: the client's resting orders, oldest priority first."""
    spec: MarketSpec = args.spec
    found = _fetch(args, "orders", None, 0)
    if isinstance(found, int):
        return found
    rows = sorted(found.resting.values(), key=lambda o: o.seq)
    records = [open_order_record(o, spec) for o in rows]
    if args.json:
        print_json({"clientId": args.client_id, "asOf": found.seq, "source": found.source,
                    "orders": records})  # fmt: skip
        return EXIT_OK
    place = "the journal" if found.source == "journal" else "the network's book"
    print(f"{_count(len(records), 'open order')} of {args.client_id}, from {place} at seq "
          f"{found.seq}")  # fmt: skip
    if records:
        print(f"{'orderId':24} {'side':4} {'price':>12} {'remaining':>12} {'seq':>7}  time")
    for r in records:
        print(
            f"{r['orderId']:24} {r['side']:4} {r['price']:>12} {r['remaining']:>12} "
            f"{r['seq']:>7}  {trade_time(r['ts'])}"
        )
    return EXIT_OK


def fills(args: argparse.Namespace) -> int:
    """`dex fills CLIENT`: the client's trades, oldest first (the last ``--tail``)."""
    spec: MarketSpec = args.spec
    found = _fetch(args, "fills", None, args.versions)
    if isinstance(found, int):
        return found
    shown = found.history.fills[-args.tail :] if args.tail else []
    records = [f.to_json(spec) for f in shown]
    if args.json:
        print_json({"clientId": args.client_id, **found.source_json(),
                    "fills": len(found.history.fills), "shown": records})  # fmt: skip
        return EXIT_OK
    total = len(found.history.fills)
    print(f"{_count(total, 'fill')} of {args.client_id}, from {_source_text(found)}")
    if records:
        print(
            f"{'tradeId':10} {'seq':>7}  {'time':8} {'side':4} {'role':5} {'price':>12} "
            f"{'amount':>12} {'orderId':20} counterparty"
        )
    for r in records:
        print(
            f"{r['tradeId']:10} {r['seq']:>7}  {trade_time(r['ts']):8} {r['side']:4} "
            f"{r['role']:5} {r['price']:>12} {r['amount']:>12} {r['orderId']:20} "
            f"{r['counterpartyClientId']}/{r['counterpartyOrderId']}"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(life: OrderLife, spec: MarketSpec) -> str:
    """One line: the order's state, amounts and price."""

    def lots(value: int | None) -> str:
        return "?" if value is None else str(spec.lots_to_amount(value))

    price = "market" if life.price is None else str(spec.ticks_to_price(life.price))
    of = f" of {lots(life.amount)}" if life.amount is not None else ""
    if life.state == RESTING:
        return f"resting: {lots(life.remaining)}{of} left, {life.side} @ {price}"
    if life.state == FILLED:
        return f"filled: {lots(life.filled)}{of}, {life.side} @ {price}"
    if life.state == CANCELLED:
        return f"cancelled {life.reason}, {lots(life.filled)}{of} filled before"
    if life.state == REJECTED:
        return f"rejected: {life.reason}"
    return (
        f"{life.state}: filled {lots(life.filled)}{of}; how it left the book is older "
        "than the history read"
    )


def step_line(step: Mapping[str, Any], spec: MarketSpec) -> str:
    """One step of an order's life as a line: seq, time, what happened."""
    s = dict(step)

    def px(value: Any) -> str:
        return "market" if value is None else str(spec.ticks_to_price(value))

    def lots(value: Any) -> str:
        return str(spec.lots_to_amount(value))

    what = s["event"]
    if what == "placed":
        text = f"placed {s['side']} {lots(s['amount'])} @ {px(s['price'])} {s.get('tif') or ''}"
    elif what == "rested":
        text = f"rests: {lots(s['amount'])} @ {px(s['price'])}"
    elif what == "filled":
        text = (
            f"filled {lots(s['amount'])} @ {px(s['price'])} ({s['role']}, trade "
            f"{s['tradeId']}, against {s['counterparty']})"
        )
    elif what == "modified":
        kept = ", priority kept" if s.get("priorityKept") else ""
        text = (
            f"modified: {lots(s['oldAmount'])} @ {px(s['oldPrice'])} -> "
            f"{lots(s['amount'])} @ {px(s['price'])}{kept}"
        )
    elif what == "cancelled":
        text = f"cancelled {lots(s['amount'])} ({s['reason']})"
    else:
        text = f"{s.get('op') or 'command'} rejected: {s['reason']}"
    when = trade_time(s["ts"]) if s.get("ts") is not None else "-"
    return f"seq {s['seq']:>7}  {when:8}  {text.rstrip()}"
