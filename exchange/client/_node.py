"""The client node: its own replica of the book, fed by `orderbook_updated`, and submits.

A `ClientNode` serves `orderbook_updated` (payload: a version's root hash), catches up
through the matcher's `orderbook_head`, and keeps a `Replica` of the published book
that only ever moves forward to versions whose every hash it verified (see
`exchange.client._replica`). It submits orders through `submit_order` and reports, from
the versions it sees, what became of them: accepted, filled, rested, cancelled, rejected.
The program around it (`bin/client.py`) is `exchange.client._program`.

Why the client polls `orderbook_head` as well as listening: a `map` from the process
worker can miss a client that announced a moment ago, or be dropped on a loaded
machine; a cheap periodic head request (one small RPC) bounds how long a replica can
lag, whatever happened to the notifications.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from functools import partial

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.client._coalesce import DEFAULT_LINGER, SubmitCoalescer
from exchange.client._output import Emit, Record
from exchange.client._replica import Replica, ReplicaUpdate
from exchange.client._source import DhtVersionSource
from exchange.protocol import (
    DEFAULT_MARKET,
    MAX_WAIT_MS,
    ORDERBOOK_UPDATED,
    REQUEST_ID_FIELD,
    RETRYABLE_CODES,
    AuthFailed,
    BadMessage,
    Head,
    HeadRequest,
    OrderRefused,
    SubmitReply,
    market_names,
    service_handler,
    sign_order,
    verify_head,
)
from exchange.versions import Version
from orderbook_core import (
    DEFAULT_SPEC,
    Event,
    MarketSpec,
    OrderBook,
    RestingOrder,
    Side,
    Trade,
    event_to_wire,
)
from transports import (
    JSON,
    ConnectRefused,
    NoPeersError,
    RemoteError,
    Transport,
    TransportError,
)

__all__ = ["ClientNode", "NotAcknowledged", "new_order_id", "new_request_id"]

_OTHER_SIDE = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}

_HELD_CHECK_INTERVAL = 0.05
"""Seconds between head requests prompted by versions held beyond the bound."""
_HELD_RETRY_MAX = 1.0
"""Seconds between two tries at most when the head asked for a held version goes
unanswered (`ClientNode._check_held`)."""


class NotAcknowledged(TimeoutError):
    """No submit_order worker acknowledged a command in time.

    `maybe_taken` is False only when no attempt can have reached a worker (no peer was
    announced, or every connection was refused): then the command surely is not in the
    journal. Else it may be, and may still execute.
    """

    def __init__(self, message: str, *, maybe_taken: bool) -> None:
        super().__init__(message)
        self.maybe_taken = maybe_taken


_NOT_SENT = (NoPeersError, ConnectRefused)
"""Transport failures after which the request surely reached no worker."""


def new_order_id(client_id: str) -> str:
    """Return a fresh order id for `client_id`, chosen by the client.

    The client picks the id (instead of letting the sequencer generate one) so that a
    submit retried after a timeout is the same `(clientId, orderId)`: the sequencer
    answers a repeat with the first reply and queues nothing. The result is at most 64
    of [A-Za-z0-9_.-] and never starts with "_" (the sequencer's own ids do).
    """
    stem = client_id.lstrip("_.-")[:48] or "o"
    return f"{stem}-{secrets.token_hex(6)}"


def new_request_id(client_id: str) -> str:
    """Return a fresh ``requestId`` for one modify of `client_id`.

    Each modify names itself, as a new order does by its orderId: the sequencer answers
    a repeat of a requestId with the first reply and applies nothing, so a retry is safe
    and a captured modify cannot be re-sent later. At most 64 of [A-Za-z0-9_.-].
    """
    stem = client_id.lstrip("_.-")[:40] or "m"
    return f"{stem}-m-{secrets.token_hex(8)}"


class ClientNode:
    """One client: serves `orderbook_updated`, keeps a verified replica, submits orders.

    Args:
        transport: the client's own transport (it serves on it).
        client_id: who this client is; its own orders and fills are those with this id.
        spec: the market.
        emit: receives every record to show (see `exchange.client._output`); none by
            default.
        on_version: called with every verified update (the whole version: its book and
            all its events, not only this client's), after the update's own records
            were emitted; the live view's tape comes from it.
        head_interval: seconds to wait before asking `orderbook_head` again after a
            failure (or a peer that answers long polls at once).
        long_poll_ms: how long one `orderbook_head` long poll may wait (0: plain polls,
            one every `head_interval`).
        request_timeout: seconds one RPC may take.
        fetch_timeout: seconds one version fetch may take (a cold fetch of a big book
            is many DHT gets).
        max_walk: how many skipped versions to read back for their events.
        source: where versions come from (default: the DHT through `transport`, with
            every hash verified); tests may pass another `DhtVersionSource`.
        signing_key: the client's Ed25519 key; every submit is signed with it, and the
            sequencer binds the clientId to it at its first accepted command. Default:
            a key made for this node's life only (the program keeps one in a key file,
            `exchange.runtime`, so that the clientId stays usable across runs).
        matcher_key: the matcher's public key: ``orderbook_head`` replies and the
            versions' roots must be signed by it. None: trust the first key that signs
            a head (trust on first use), then that key only; `on_matcher_key` is told
            of it, to record it. No root is taken before a head has been verified.
        on_matcher_key: called once with the key trusted on first use.
        trust_matcher: asked before a key is trusted on first use, with the exchange
            instance the head names (None: not known yet) and the key; it raises
            `AuthFailed` to refuse the key (e.g. another key is pinned for that
            instance) or `BadMessage` to wait for a better head, and returns to trust it.
        listen: serve and announce ``orderbook_updated`` (push). Without it the node
            follows the head by long polls only and is never announced: what a
            one-shot client wants, so that it leaves nothing behind in the grapes.
        submit_linger: seconds the first of the submits made at once waits for the
            others, to send them in one ``submit_order`` batch
            (`exchange.client._coalesce`); None: each alone, at once.
    """

    def __init__(
        self,
        transport: Transport,
        client_id: str,
        spec: MarketSpec = DEFAULT_SPEC,
        *,
        emit: Emit | None = None,
        on_version: Callable[[ReplicaUpdate[Version]], None] | None = None,
        head_interval: float = 1.0,
        long_poll_ms: int = 10_000,
        request_timeout: float = 5.0,
        fetch_timeout: float = 30.0,
        max_walk: int = 32,
        source: DhtVersionSource | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        matcher_key: Ed25519PublicKey | None = None,
        on_matcher_key: Callable[[Ed25519PublicKey], None] | None = None,
        trust_matcher: Callable[[str | None, Ed25519PublicKey], None] | None = None,
        listen: bool = True,
        submit_linger: float | None = DEFAULT_LINGER,
    ) -> None:
        self.matcher_key = matcher_key
        self._on_matcher_key = on_matcher_key
        self._trust_matcher = trust_matcher
        self._listen = listen
        self.transport = transport
        self.names = market_names(spec.market)
        self.submits = (
            None
            if submit_linger is None
            else SubmitCoalescer(transport, linger=submit_linger, name=self.names.submit_order)
        )
        """Sends the submits in flight together (None: each alone)."""
        self.signing_key = signing_key or Ed25519PrivateKey.generate()
        self.client_id = client_id
        self.spec = spec
        self._emit = emit or (lambda _record: None)
        self._quiet = emit is None  # nobody reads records: do not build them
        self._on_version = on_version
        self._head_interval = head_interval
        self._long_poll_ms = min(long_poll_ms, MAX_WAIT_MS)
        self._request_timeout = request_timeout
        self.replica: Replica[Version] = Replica(
            source
            or DhtVersionSource(
                transport, spec, timeout=fetch_timeout, matcher_key=lambda: self.matcher_key
            ),
            max_walk=max_walk,
            on_update=self._on_update,
            on_problem=self._warn,
        )
        self.head = Head(0, None)
        self.fills: list[Trade] = []
        self.own_events: list[Event] = []
        """This client's own events, in sequence order, from the versions it verified."""
        self._shown_orders: list[Record] | None = None
        self._head_ok = True

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Serve `orderbook_updated`, keep the replica and poll the head, until cancelled.

        Signals `task_status.started()` once `orderbook_updated` is served (at once
        without `listen`). Its announce goes on in the background, retried for as long
        as the node runs, and stops with it: the long poll of `orderbook_head` keeps the
        replica current without push, so a DHT that refuses announces (a grape whose
        peers are down or restarting) never holds up a submit or a watch.

        Raises:
            transports.TransportError: cannot serve (e.g. no port to listen on).
        """
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.replica.run)
                if self._listen:
                    updated = service_handler(ORDERBOOK_UPDATED, self.on_updated)
                    handlers = {self.names.orderbook_updated: updated}
                    await tg.start(partial(self.transport.serve, handlers, wait_announced=False))
                tg.start_soon(self._poll_head)
                tg.start_soon(self._check_held)
                task_status.started()
        except BaseExceptionGroup as group:
            # One failure (e.g. serve could not listen) is raised as itself,
            # so callers can catch TransportError without unpacking groups.
            raise _single(group) from None

    async def on_updated(self, payload: JSON) -> JSON:
        """The `orderbook_updated` handler: record the hash, reply null at once.

        Raises:
            BadRootHash: `payload` is not a 40-hex root hash (the replica is unchanged);
                served as ``ERR_BAD_REQUEST``.
        """
        self.replica.notify(payload)
        return None

    async def fetch_head(self, *, wait_ms: int = 0) -> Head:
        """Ask the matcher for its latest version; raise the replica's bound to it.

        Args:
            wait_ms: with more than 0, a long poll: the matcher answers as soon as a
                version beyond the last head this node saw exists, or after `wait_ms`.

        Raises:
            transports.TransportError: the matcher did not answer (or refused).
            BadMessage: the reply is not ``{"seq": int, "root": hash | null, ...}``.
            AuthFailed: the reply is not signed by the matcher's key, or `trust_matcher`
                refused the key (the bound and the replica are left as they were).
        """
        request = HeadRequest(self.head.seq, wait_ms) if wait_ms > 0 else HeadRequest()
        timeout = self._request_timeout + wait_ms / 1000
        reply = await self.transport.request(
            self.names.orderbook_head, request.to_wire(), timeout=timeout
        )
        head = Head.from_wire(reply)
        key = verify_head(head, self.matcher_key)
        if self.matcher_key is None:
            if self._trust_matcher is not None:
                self._trust_matcher(head.instance, key)  # raises to refuse
            self.matcher_key = key  # trust on first use: this key only from now on
            if self._on_matcher_key is not None:
                self._on_matcher_key(key)
        if head.seq > self.head.seq:
            self.head = head
        self.replica.raise_bound(head.seq)
        if head.root is not None and head.seq > self.replica.seq:
            self.replica.notify(head.root)
        return head

    async def _poll_head(self) -> None:
        """Follow the matcher's head by long polls: a new version is known in ms.

        Push (``orderbook_updated``) reaches a random subset of announced peers on the
        challenge's grapes (dead peers stay announced), so the long poll is what keeps
        a replica current; after a failure it waits `head_interval` before asking again.
        """
        while True:
            seen = self.head.seq
            started = anyio.current_time()
            try:
                head = await self.fetch_head(wait_ms=self._long_poll_ms)
            except (TransportError, BadMessage, AuthFailed) as exc:
                if self._head_ok:
                    self._warn(f"orderbook_head: {exc}")
                self._head_ok = False
                await anyio.sleep(self._head_interval)
                continue
            self._head_ok = True
            early = anyio.current_time() - started < self._long_poll_ms / 2000
            if self._long_poll_ms == 0 or (head.seq <= seen and early):
                # Plain polling, or a peer that answers long polls at once: do not spin.
                await anyio.sleep(self._head_interval)

    async def _check_held(self) -> None:
        """Ask the head again whenever the replica holds a version beyond its bound.

        The matcher records a version before it broadcasts it, so a real version is
        never beyond the head for long; a forged one stays held and is never taken.
        A head that could not be read at all (no answer: a matcher restarting, a dead
        address still announced) is asked for again, backing off to
        `_HELD_RETRY_MAX` seconds, until some answer comes: without it a node that
        follows by pushes alone (no long poll) kept the version held until the next
        push, and the last push of a quiet market has no next one.
        """
        while True:
            await self.replica.wait_held()
            delay = _HELD_CHECK_INTERVAL
            while True:
                with (
                    anyio.move_on_after(self._request_timeout),
                    suppress(TransportError),
                ):
                    with suppress(BadMessage, AuthFailed):  # an answer, refused: held
                        await self.fetch_head()
                    break
                await anyio.sleep(delay)
                delay = min(delay * 2, _HELD_RETRY_MAX)
            await anyio.sleep(_HELD_CHECK_INTERVAL)

    async def wait_for_seq(self, seq: int) -> None:
        """Return once the replica holds sequence number `seq` (or later)."""
        await self.replica.wait_for(seq)

    # ------------------------------------------------------------------ submitting

    async def submit(self, order: Mapping[str, JSON], *, timeout: float = 30.0) -> SubmitReply:
        """Submit `order` (a `submit_order` payload) and return the sequencer's reply.

        The payload gets an `orderId` if it has none (a modify its `requestId`), so that
        retries are idempotent,
        and is signed with the node's key (`exchange.protocol.sign_order`). Retries on
        transport failures, ``ERR_UNAVAILABLE`` and ``ERR_TIMEOUT`` (the server's
        handler bound) until `timeout`.

        Raises:
            OrderRefused: the submit_order worker refused the order.
            NotAcknowledged: no worker acknowledged it within `timeout` seconds (a
                `TimeoutError`; its `maybe_taken` says whether an attempt may have
                reached the worker, so that the order may still be in the journal).
        """
        payload = dict(order)
        payload.setdefault("clientId", self.client_id)
        if payload.get("op", "new") == "new":
            payload.setdefault("orderId", new_order_id(str(payload["clientId"])))
        if payload.get("op") == "modify":
            payload.setdefault(REQUEST_ID_FIELD, new_request_id(str(payload["clientId"])))
        # The default market's orders keep the seed's dex-order/1 (it means that market);
        # another market's name it, signed dex-order/2 (docs/protocol.md "Markets").
        market = None if self.spec.market == DEFAULT_MARKET else self.spec.market
        payload = sign_order(payload, self.signing_key, market)
        delay = 0.05
        last_error = "no attempt"
        maybe_taken = in_flight = False
        with anyio.move_on_after(timeout):
            while True:
                in_flight = True  # cut off by the deadline now: it may have arrived
                try:
                    reply = await self._send(payload, min(self._request_timeout, timeout))
                except RemoteError as exc:
                    in_flight = False
                    if not exc.message.startswith(RETRYABLE_CODES):
                        raise OrderRefused(exc.message) from None
                    last_error = exc.message
                    maybe_taken = True  # ERR_TIMEOUT: the handler may have journaled it
                except TransportError as exc:
                    in_flight = False
                    last_error = f"{type(exc).__name__}: {exc}"
                    maybe_taken = maybe_taken or not isinstance(exc, _NOT_SENT)
                else:
                    try:
                        return SubmitReply.from_wire(reply)
                    except BadMessage as exc:
                        raise OrderRefused(f"submit_order replied {reply!r}: {exc}") from None
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise NotAcknowledged(
            f"submit_order not accepted within {round(timeout, 1):g} s ({last_error})",
            maybe_taken=maybe_taken or in_flight,
        )

    async def submit_many(
        self, orders: Sequence[Mapping[str, JSON]], *, timeout: float = 30.0
    ) -> list[SubmitReply | OrderRefused | NotAcknowledged]:
        """`submit` each of `orders` at once (they travel together: `submits`); per
        order, its reply or why it was not taken.

        The batch keeps the orders' order (each task signs and joins it before its first
        await, and tasks start in the order they were started); an order retried after
        a failure goes in a later request, after the others."""
        results: list[SubmitReply | OrderRefused | NotAcknowledged] = [
            NotAcknowledged("not sent", maybe_taken=False)
        ] * len(orders)

        async def one(index: int, order: Mapping[str, JSON]) -> None:
            try:
                results[index] = await self.submit(order, timeout=timeout)
            except (OrderRefused, NotAcknowledged) as exc:
                results[index] = exc

        async with anyio.create_task_group() as tg:
            for index, order in enumerate(orders):
                tg.start_soon(one, index, order)
        return results

    async def _send(self, payload: JSON, timeout: float) -> JSON:
        if self.submits is None:
            return await self.transport.request(self.names.submit_order, payload, timeout=timeout)
        return await self.submits.request(payload, timeout=timeout)

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
        if not self._quiet:
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
        touched = not update.complete or self._shown_orders is None
        for event in update.events:
            if not self._concerns_me(event):
                continue
            self.own_events.append(event)
            if isinstance(event, Trade):
                self.fills.append(event)
            if not self._quiet:
                self._emit(self._own_record(event))
            touched = True
        if touched and not self._quiet:  # only its own events change this client's orders
            self._show_orders(update.seq)
        if self._on_version is not None:
            self._on_version(update)

    def _show_orders(self, seq: int) -> None:
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
            self._emit({"event": "orders", "seq": seq, "orders": orders})
        self._shown_orders = orders

    def _concerns_me(self, event: Event) -> bool:
        if isinstance(event, Trade):
            return self.client_id in (event.maker_client_id, event.taker_client_id)
        return getattr(event, "client_id", None) == self.client_id

    def _own_record(self, event: Event) -> Record:
        """The record to show for `event`, one of this client's.

        Fields are the core's wire form (`event_to_wire`: camelCase, decimal strings); a
        trade becomes a ``fill`` seen from this client's side.
        """
        me = self.client_id
        wire = event_to_wire(event, self.spec)
        if isinstance(event, Trade):
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
        del wire["clientId"]
        return {"event": wire.pop("type"), **wire}

    def _warn(self, message: str) -> None:
        self._emit({"event": "warning", "message": message})


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The only exception inside nested one-member groups, or the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
