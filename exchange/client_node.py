"""The client node: its own replica of the book, fed by `orderbook_updated`, and submits.

A `ClientNode` serves `orderbook_updated` (payload: a version's root hash), catches up
through the process worker's `orderbook_head`, and keeps a `Replica` of the published
book that only ever moves forward to versions whose every hash it verified (see
`exchange._replica`). It submits orders through `submit_order` and reports, from the
versions it sees, what became of them: accepted, filled, rested, cancelled, rejected.

`main()` is the program behind `bin/client.py`.

Why the client polls `orderbook_head` as well as listening: a `map` from the process
worker can miss a client that announced a moment ago, or be dropped on a loaded
machine; a cheap periodic head request (one small RPC) bounds how long a replica can
lag, whatever happened to the notifications.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO, TypeVar

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange._client_args import USAGE, ArgumentError, ClientArgs, parse_client_args
from exchange._client_output import Emit, Record, TextOrJsonWriter
from exchange._errors import ERR_BAD_REQUEST, ERR_UNAVAILABLE, InvalidVersion, error_reply
from exchange._replica import BadRootHash, FetchFailed, Replica, ReplicaUpdate
from exchange.versions import RootDoc, Version, VersionReader
from orderbook_core import (
    DEFAULT_SPEC,
    Event,
    MarketSpec,
    OrderBook,
    RestingOrder,
    Side,
    Trade,
    ValidationError,
    event_to_wire,
    parse_command,
)
from transports import (
    JSON,
    RemoteError,
    ServiceError,
    Transport,
    TransportError,
    open_transport,
)

__all__ = [
    "ORDERBOOK_HEAD",
    "ORDERBOOK_UPDATED",
    "SUBMIT_ORDER",
    "ClientNode",
    "DhtVersionSource",
    "Head",
    "OrderRefused",
    "Submitted",
    "main",
    "new_order_id",
    "run_client",
]

_T = TypeVar("_T")

_OTHER_SIDE = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}

SUBMIT_ORDER = "submit_order"
ORDERBOOK_UPDATED = "orderbook_updated"
ORDERBOOK_HEAD = "orderbook_head"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports when the output pipe closed

_RETRYABLE = (ERR_UNAVAILABLE, "ERR_TIMEOUT")
"""Error codes after which a submit is retried (same orderId): a dependency failed, or
the Grenache server cut the handler off at its time bound (journaled or not: the
retry finds out). Any other error is the sequencer's answer."""


class OrderRefused(Exception):
    """The submit_order worker refused the order; `str()` is its ``ERR_*`` reply."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """The submit_order worker's reply: the order is durable as sequence number `seq`."""

    seq: int
    order_id: str


@dataclass(frozen=True, slots=True)
class Head:
    """The process worker's latest version: `seq` and its root hash (None when empty)."""

    seq: int
    root: str | None


def new_order_id(client_id: str) -> str:
    """Return a fresh order id for `client_id`, chosen by the client.

    The client picks the id (instead of letting the sequencer generate one) so that a
    submit retried after a timeout is the same `(clientId, orderId)`: the submit worker
    answers a repeat with the first reply and queues nothing. The result is at most 64
    of [A-Za-z0-9_.-] and never starts with "_" (the sequencer's own ids do).
    """
    stem = client_id.lstrip("_.-")[:48] or "o"
    return f"{stem}-{secrets.token_hex(6)}"


class DhtVersionSource:
    """Reads versions from the DHT through `VersionReader`, which verifies every hash.

    Every failure (missing item, content that does not hash to its key, bad format,
    another market, network error, timeout) becomes `FetchFailed`: the replica then
    keeps what it has.
    """

    def __init__(self, transport: Transport, spec: MarketSpec, *, timeout: float = 10.0) -> None:
        self.reader = VersionReader(transport, spec)
        self._timeout = timeout

    async def fetch_root(self, root_hash: str) -> RootDoc:
        return await self._guard(self.reader.fetch_root(root_hash))

    async def fetch(self, root_hash: str) -> Version:
        return await self._guard(self.reader.fetch(root_hash))

    async def fetch_events(self, root_hash: str) -> tuple[RootDoc, tuple[Event, ...]]:
        return await self._guard(self.reader.fetch_events(root_hash))

    async def _guard(self, call: Awaitable[_T]) -> _T:
        try:
            with anyio.fail_after(self._timeout):
                return await call
        except TimeoutError:
            raise FetchFailed(f"no answer from the DHT within {self._timeout} s") from None
        except (InvalidVersion, TransportError) as exc:
            raise FetchFailed(str(exc) or type(exc).__name__) from exc


class ClientNode:
    """One client: serves `orderbook_updated`, keeps a verified replica, submits orders.

    Args:
        transport: the client's own transport (it serves on it).
        client_id: who this client is; its own orders and fills are those with this id.
        spec: the market.
        emit: receives every record to show (see `exchange._client_output`); none by
            default.
        head_interval: seconds between `orderbook_head` polls.
        request_timeout: seconds one RPC may take.
        fetch_timeout: seconds one version fetch may take (a cold fetch of a big book
            is many DHT gets).
        max_walk: how many skipped versions to read back for their events.
        source: where versions come from (default: the DHT through `transport`, with
            every hash verified); tests may pass another `DhtVersionSource`.
    """

    def __init__(
        self,
        transport: Transport,
        client_id: str,
        spec: MarketSpec = DEFAULT_SPEC,
        *,
        emit: Emit | None = None,
        head_interval: float = 1.0,
        request_timeout: float = 5.0,
        fetch_timeout: float = 30.0,
        max_walk: int = 32,
        source: DhtVersionSource | None = None,
    ) -> None:
        self.transport = transport
        self.client_id = client_id
        self.spec = spec
        self._emit = emit or (lambda _record: None)
        self._head_interval = head_interval
        self._request_timeout = request_timeout
        self.replica: Replica[Version] = Replica(
            source or DhtVersionSource(transport, spec, timeout=fetch_timeout),
            max_walk=max_walk,
            on_update=self._on_update,
            on_problem=self._warn,
            admit=self._admit,
        )
        self.head = Head(0, None)
        self._head_known = False
        self.fills: list[Trade] = []
        self.own_events: list[Event] = []
        """This client's own events, in sequence order, from the versions it verified."""
        self._shown_orders: list[Record] | None = None
        self._head_ok = True

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Serve `orderbook_updated`, keep the replica and poll the head, until cancelled.

        Signals `task_status.started()` once `orderbook_updated` is served and announced.

        Raises:
            transports.TransportError: cannot serve (e.g. the grape is unreachable).
        """
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.replica.run)
                handlers = {ORDERBOOK_UPDATED: self.on_updated}
                await tg.start(partial(self.transport.serve, handlers))
                tg.start_soon(self._poll_head)
                task_status.started()
        except BaseExceptionGroup as group:
            # One failure (the usual case: serve could not announce) is raised as itself,
            # so callers can catch TransportError without unpacking groups.
            raise _single(group) from None

    async def on_updated(self, payload: JSON) -> JSON:
        """The `orderbook_updated` handler: record the hash, reply null at once.

        Raises:
            ServiceError: ``ERR_BAD_REQUEST`` when `payload` is not a 40-hex root hash
                (the replica is unchanged).
        """
        try:
            self.replica.notify(payload)
        except BadRootHash as exc:
            raise ServiceError(error_reply(ERR_BAD_REQUEST, str(exc))) from None
        return None

    async def fetch_head(self) -> Head:
        """Ask the process worker for its latest version and record it for syncing.

        Raises:
            transports.TransportError: the process worker did not answer (or refused).
            ValueError: the reply is not ``{"seq": int, "root": hash | null}``.
        """
        reply = await self.transport.request(ORDERBOOK_HEAD, None, timeout=self._request_timeout)
        head = _parse_head(reply)
        self._head_known = True
        if head.seq > self.head.seq:
            self.head = head
        if head.root is not None and head.seq > self.replica.seq:
            self.replica.notify(head.root)
        return head

    async def _admit(self, seq: int) -> bool:
        """Whether a version numbered `seq` may replace the replica: not beyond the head.

        `orderbook_updated` is unauthenticated and anyone can put a self-consistent
        version in the DHT; one numbered far ahead used to pin the replica on a forged
        book for good (no real version is ever "newer"). The process worker's head is
        the anchor: a version beyond the last head seen makes the client ask for the
        head again (the worker records a version before it broadcasts it, so a real
        one is never beyond it). Without any head yet (no process worker answering,
        e.g. before the first poll), nothing can be checked and the version is taken.
        """
        if seq <= self.head.seq:
            return True
        try:
            await self.fetch_head()
        except (TransportError, ValueError):
            return not self._head_known
        return seq <= self.head.seq

    async def _poll_head(self) -> None:
        while True:
            try:
                await self.fetch_head()
            except (TransportError, ValueError) as exc:
                if self._head_ok:
                    self._warn(f"orderbook_head: {exc}")
                self._head_ok = False
            else:
                self._head_ok = True
            await anyio.sleep(self._head_interval)

    async def wait_for_seq(self, seq: int) -> None:
        """Return once the replica holds sequence number `seq` (or later)."""
        await self.replica.wait_for(seq)

    # ------------------------------------------------------------------ submitting

    async def submit(self, order: Mapping[str, JSON], *, timeout: float = 30.0) -> Submitted:
        """Submit `order` (a `submit_order` payload) and return the sequencer's reply.

        The payload gets an `orderId` if it has none, so that retries are idempotent.
        Retries on transport failures, ``ERR_UNAVAILABLE`` and ``ERR_TIMEOUT`` (the
        server's handler bound) until `timeout`.

        Raises:
            OrderRefused: the submit_order worker refused the order.
            TimeoutError: no worker accepted it within `timeout` seconds.
        """
        payload = dict(order)
        payload.setdefault("clientId", self.client_id)
        if payload.get("op", "new") == "new":
            payload.setdefault("orderId", new_order_id(str(payload["clientId"])))
        delay = 0.05
        last_error = "no attempt"
        with anyio.move_on_after(timeout):
            while True:
                try:
                    reply = await self.transport.request(
                        SUBMIT_ORDER, payload, timeout=min(self._request_timeout, timeout)
                    )
                except RemoteError as exc:
                    if not exc.message.startswith(_RETRYABLE):
                        raise OrderRefused(exc.message) from None
                    last_error = exc.message
                except TransportError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    return _parse_submitted(reply)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise TimeoutError(f"submit_order not accepted within {timeout} s ({last_error})")

    # ------------------------------------------------------------------ the replica

    @property
    def book(self) -> OrderBook:
        """The replica's book (an empty book before the first version)."""
        version = self.replica.version
        return version.book if version is not None else OrderBook(self.spec)

    @property
    def book_hash(self) -> str | None:
        """The replica's book hash, as its verified root names it (None: empty book)."""
        version = self.replica.version
        return version.root.book if version is not None else None

    def own_orders(self) -> list[RestingOrder]:
        """This client's resting orders in the replica, in priority order."""
        return [o for o in self.book.orders() if o.client_id == self.client_id]

    def top_of_book(self) -> tuple[Record | None, Record | None]:
        """The best bid and ask of the replica as ``{"price", "amount"}`` (or None)."""
        book = self.book
        return (
            self._level(book.levels(Side.BUY, 1)),
            self._level(book.levels(Side.SELL, 1)),
        )

    def _level(self, levels: list[tuple[int, int]]) -> Record | None:
        if not levels:
            return None
        price, amount = levels[0]
        return {"price": self._price(price), "amount": self._amount(amount)}

    def _price(self, ticks: int | None) -> str | None:
        return None if ticks is None else str(self.spec.ticks_to_price(ticks))

    def _amount(self, lots: int) -> str:
        return str(self.spec.lots_to_amount(lots))

    async def _on_update(self, update: ReplicaUpdate[Version]) -> None:
        bid, ask = self.top_of_book()
        self._emit(
            {
                "event": "book",
                "seq": update.seq,
                "root": update.root_hash,
                "book": update.version.root.book,
                "bid": bid,
                "ask": ask,
                "complete": update.complete,
            }
        )
        for event in update.events:
            record = self._own_record(event)
            if record is not None:
                self.own_events.append(event)
                self._emit(record)
        orders = [
            {
                "orderId": o.order_id,
                "side": str(o.side),
                "price": self._price(o.price),
                "remaining": self._amount(o.remaining),
            }
            for o in self.own_orders()
        ]
        if orders != self._shown_orders and (orders or self._shown_orders is not None):
            self._emit({"event": "orders", "seq": update.seq, "orders": orders})
        self._shown_orders = orders

    def _own_record(self, event: Event) -> Record | None:
        """The record to show for `event` if it concerns this client, else None.

        Fields are the core's wire form (`event_to_wire`: camelCase, decimal strings); a
        trade becomes a ``fill`` seen from this client's side.
        """
        me = self.client_id
        wire = event_to_wire(event, self.spec)
        if isinstance(event, Trade):
            if me not in (event.maker_client_id, event.taker_client_id):
                return None
            self.fills.append(event)
            taker = event.taker_client_id == me
            side = event.taker_side if taker else _OTHER_SIDE[event.taker_side]
            return {
                "event": "fill",
                "seq": event.seq,
                "tradeId": event.trade_id,
                "orderId": event.taker_order_id if taker else event.maker_order_id,
                "role": "taker" if taker else "maker",
                "side": str(side),
                "price": wire["price"],
                "amount": wire["amount"],
                "counterparty": event.maker_client_id if taker else event.taker_client_id,
            }
        if wire.pop("clientId") != me:
            return None
        return {"event": wire.pop("type"), **wire}

    def _warn(self, message: str) -> None:
        self._emit({"event": "warning", "message": message})


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The only exception inside nested one-member groups, or the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _parse_head(reply: JSON) -> Head:
    if not isinstance(reply, dict):
        raise ValueError(f"orderbook_head replied {reply!r}, expected {{seq, root}}")
    seq, root = reply.get("seq"), reply.get("root")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError(f"orderbook_head: bad seq {seq!r}")
    if root is not None and not isinstance(root, str):
        raise ValueError(f"orderbook_head: bad root {root!r}")
    return Head(seq, root)


def _parse_submitted(reply: JSON) -> Submitted:
    if isinstance(reply, dict):
        seq, order_id = reply.get("seq"), reply.get("orderId")
        if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(order_id, str):
            return Submitted(seq, order_id)
    raise OrderRefused(f"submit_order replied {reply!r}, expected {{seq, orderId}}")


# ---------------------------------------------------------------------- the program


async def run_client(
    args: ClientArgs,
    transport: Transport,
    out: TextIO,
    *,
    spec: MarketSpec = DEFAULT_SPEC,
    head_interval: float = 1.0,
) -> int:
    """Run the client program on `transport`; return its exit status.

    With an order: submit it, then (with ``--once``) wait until the replica holds its
    sequence number and print ``done``. Without: watch (``--once``: until the replica
    has caught up with the head it first saw).
    """
    emit: Emit = TextOrJsonWriter(out, as_json=args.json, prefix=f"[{args.client_id}] ")
    order = dict(args.order) if args.order is not None else None
    if order is not None:
        if order.get("op", "new") == "new":
            order.setdefault("orderId", new_order_id(args.client_id))
        try:
            parse_command(order, spec, seq=1, ts=0)
        except ValidationError as exc:
            print(f"client: bad order: {exc}", file=sys.stderr)
            return EXIT_USAGE
    node = ClientNode(transport, args.client_id, spec, emit=emit, head_interval=head_interval)
    deadline = anyio.current_time() + args.timeout
    startup = min(args.timeout, 15.0)
    async with anyio.create_task_group() as tg:
        try:
            with anyio.fail_after(startup + 2.0):  # the transport gives up first
                await tg.start(node.run)
        except (TimeoutError, TransportError) as exc:
            detail = (
                str(exc) if isinstance(exc, TransportError) else f"no answer in {startup + 2.0} s"
            )
            print(f"client: cannot serve through grape {args.grape}: {detail}", file=sys.stderr)
            tg.cancel_scope.cancel()
            return EXIT_UNREACHABLE
        emit({"event": "started", "clientId": args.client_id, "grape": args.grape})
        status = await _drive(node, args, order, emit, deadline)
        tg.cancel_scope.cancel()
    return status


async def _drive(
    node: ClientNode, args: ClientArgs, order: dict[str, Any] | None, emit: Emit, deadline: float
) -> int:
    def left() -> float:
        return max(deadline - anyio.current_time(), 0.01)

    target: int | None = None
    if order is not None:
        try:
            submitted = await node.submit(order, timeout=left())
        except OrderRefused as exc:
            emit({"event": "refused", "error": str(exc)})
            return EXIT_FAILED
        except TimeoutError as exc:
            print(f"client: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        emit({"event": "submitted", "seq": submitted.seq, "orderId": submitted.order_id})
        target = submitted.seq
    if not args.once:
        await anyio.sleep_forever()
    if target is None:
        target = await _first_head(node, left())
        if target is None:
            print("client: the process worker (orderbook_head) did not answer", file=sys.stderr)
            return EXIT_UNREACHABLE
    with anyio.move_on_after(left()):
        await node.wait_for_seq(target)
        emit({"event": "done", "seq": node.replica.seq, "book": node.book_hash})
        return EXIT_OK
    print(
        f"client: timed out after {args.timeout} s waiting for seq {target} "
        f"(replica at seq {node.replica.seq})",
        file=sys.stderr,
    )
    return EXIT_FAILED


async def _first_head(node: ClientNode, timeout: float) -> int | None:
    with anyio.move_on_after(timeout):
        while True:
            try:
                return (await node.fetch_head()).seq
            except (TransportError, ValueError):
                await anyio.sleep(0.2)
    return None


def main(argv: list[str] | None = None) -> int:
    """The program behind `bin/client.py`; returns the exit status."""
    words = sys.argv[1:] if argv is None else argv
    try:
        args = parse_client_args(words, default_client_id=f"watcher-{os.getpid()}")
    except ArgumentError as exc:
        print(f"client: {exc}\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    if args.help:
        print(USAGE)
        return EXIT_OK

    async def amain() -> int:
        try:
            transport = open_transport(
                "grenache",
                grape=args.grape,
                announce_timeout=min(args.timeout, 10.0),
                grape_timeout=min(args.timeout, 5.0),
            )
        except (TransportError, ValueError) as exc:
            print(f"client: cannot use grape {args.grape}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        async with transport:
            return await run_client(args, transport, sys.stdout)

    status = EXIT_INTERRUPTED  # Ctrl-C, unless the run ends otherwise
    try:
        try:
            status = anyio.run(amain)
        except* BrokenPipeError:
            # The reader of our output went away (`client.py ... | head -1`): stop
            # quietly, as a shell tool killed by SIGPIPE would, and keep Python from
            # printing a second error while flushing stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            status = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        pass
    return status
