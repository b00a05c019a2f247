"""The client program behind `bin/client`: arguments in, the market out, an exit status.

`main()` parses the challenge's ``key=value`` words (`exchange.client._args`), opens the
Grenache transport, runs a node, submits the order if there is one, and shows what
happens: on a terminal, the live market view (`exchange.client.view`, with rich); else
one line per record, text or ``--json`` (`exchange.client._output`). Exit statuses are
`EXIT_*` below and in docs/operations.md.

What is shown is what concerns *this run*: a client that submits an order does not
reprint the events of its earlier orders (those of sequence numbers before its own
command), which a fresh replica collects when it walks back through recent versions.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.client._args import CANCEL_ALL, ClientArgs, parse_client_args
from exchange.client._args import USAGE as USAGE
from exchange.client._node import ClientNode, NotAcknowledged, new_order_id, new_request_id
from exchange.client._output import REJECT_TEXT, Emit, Record, TextOrJsonWriter
from exchange.client._preflight import grape_refuses, matcher_trust, seconds, trusted_head
from exchange.client._replica import ReplicaUpdate
from exchange.client.view import LiveMarket, MarketState, rich_available
from exchange.protocol import (
    REQUEST_ID_FIELD,
    ArgumentError,
    Head,
    OrderRefused,
    SubmitReply,
    request_id_problem,
    reserved_order_id,
    take_request_id,
)
from exchange.runtime import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_CONFIRMED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    NO_METRICS,
    Metrics,
    client_key_path,
    load_or_create_key,
    serve_prometheus,
)
from exchange.versions import Version
from orderbook_core import (
    MarketSpec,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderRested,
    Trade,
    ValidationError,
    parse_command,
)
from transports import Transport, TransportError, open_transport

__all__ = [
    "main",
    "run_client",
]

_OWN_KINDS = frozenset({"accepted", "rested", "fill", "cancelled", "rejected", "modified"})
"""Records about orders (the client's, and the tape's trades): shown from its command on."""


class _Shown:
    """Passes records on, minus those about earlier commands; the first book is complete.

    While the order is being submitted its seq is unknown, so records about orders are
    held; `start_at` releases those at or after the order's seq and drops the rest.
    A ``complete: false`` on the first version means only that the client started
    there (it skipped nothing it had), so that flag is set true.
    """

    def __init__(self, sink: Emit, *, hold: bool) -> None:
        self._sink = sink
        self._from: float | None = None if hold else 0
        self._held: list[Record] = []
        self._seen_book = False
        self._target = 0
        self._op = "new"
        self._closed = False

    def close(self) -> None:
        """Show nothing more: the run's last word was said (e.g. a refusal)."""
        self._held = []
        self._closed = True

    def __call__(self, record: Record) -> None:
        if self._closed:
            return
        kind = record.get("event")
        if kind == "book" and not self._seen_book:
            self._seen_book = True
            record = {**record, "complete": True}
        if kind in _OWN_KINDS or kind == "trade":
            if self._from is None:
                self._held.append(record)
                return
            if record["seq"] < self._from:
                return
            if kind == "rejected" and record["seq"] == self._target and self._op == "cancel":
                record = {**record, "op": "cancel"}
        self._sink(record)

    def start_at(self, seq: float, op: str = "new") -> None:
        """Show records from sequence number `seq` on (math.inf: none), held ones first."""
        self._from = seq
        if seq != math.inf:
            self._target = int(seq)
        self._op = op
        held, self._held = self._held, []
        for record in held:
            self(record)


def _check_order(order: dict[str, Any], spec: MarketSpec) -> str | None:
    """What the sequencer would refuse in `order`, said before anything is sent."""
    if order.get("op") == CANCEL_ALL:
        return None  # the client's own: cancels, each checked when made
    try:
        payload, request_id = take_request_id(order)
        command = parse_command(payload, spec, seq=1, ts=0)
    except ValidationError as exc:
        return str(exc)
    return reserved_order_id(command) or request_id_problem(command, request_id)


async def run_client(
    args: ClientArgs,
    transport: Transport,
    out: TextIO,
    *,
    spec: MarketSpec | None = None,
    head_interval: float = 1.0,
    long_poll_ms: int = 10_000,
    view: bool | None = None,
    console: Any = None,
) -> int:
    """Run the client program on `transport`; return its exit status.

    With an order: submit it, then (with ``--once``) wait until the replica holds its
    sequence number and print ``done`` with its outcome. Without: watch (``--once``:
    until the replica has caught up with the head it first saw). With
    ``--metrics-port``, the replica's seq, head and lag are served for Prometheus
    while it runs.

    Args:
        spec: the market (default: `args.market` with the default tick, lot and limits).
        long_poll_ms: how long one ``orderbook_head`` long poll may wait (0: plain polls,
            one every `head_interval`; see `push_only_following`).
        view: draw the live market view (default: when `out` is a terminal, rich is
            installed and neither ``--json`` nor ``--plain`` was given).
        console: the `rich.console.Console` of the view (default: one on `out`).
    """
    with ExitStack() as stack:
        metrics = NO_METRICS
        if args.metrics_port is not None:
            try:
                metrics, port = stack.enter_context(
                    serve_prometheus(args.metrics_port, "client", market=args.market)
                )
            except (ImportError, OSError) as exc:
                print(f"client: --metrics-port {args.metrics_port}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            print(f"client: metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr)
        spec = spec or MarketSpec(market=args.market)
        return await _run(
            args, transport, out, spec, (head_interval, long_poll_ms), view, console, metrics
        )


async def _run(
    args: ClientArgs,
    transport: Transport,
    out: TextIO,
    spec: MarketSpec,
    following: tuple[float, int],
    view: bool | None,
    console: Any,
    metrics: Metrics,
) -> int:
    order = dict(args.order) if args.order is not None else None
    if order is not None:
        if order.get("op", "new") == "new":
            order.setdefault("orderId", new_order_id(args.client_id))
        if order.get("op") == "modify":  # fresh per run; given only to retry that modify
            order.setdefault(REQUEST_ID_FIELD, new_request_id(args.client_id))
        problem = _check_order(order, spec)
        if problem is not None:
            print(f"client: bad order: {problem}", file=sys.stderr)
            return EXIT_USAGE
        key_path = Path(args.key_file) if args.key_file else client_key_path(args.client_id)
        try:
            signing_key: Ed25519PrivateKey | None = load_or_create_key(key_path)
        except OSError as exc:
            print(f"client: key file: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        signing_key = None  # a watcher signs nothing
    try:
        trusted, trust_matcher = matcher_trust(args)
    except OSError as exc:
        print(f"client: matcher key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    refused = await grape_refuses(transport)
    if refused is not None:
        print(
            f"client: nothing listens at grape {args.grape} ({refused}): start the grape,"
            " or give grape=URL; nothing was sent",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    if view is None and args.live and not rich_available():
        print("client: --live needs rich: pip install 'distributed-exchange[tui]'", file=sys.stderr)
        return EXIT_USAGE
    if view is None:
        view = args.live or (not (args.json or args.plain) and out.isatty() and rich_available())
    live: LiveMarket | None = None
    on_version: Callable[[ReplicaUpdate[Version]], None]
    if view:
        if console is None:
            from rich.console import Console

            console = Console(file=out)
        live = LiveMarket(MarketState(spec, args.client_id), console, head=lambda: node.head.seq)
        shown = _Shown(live.emit, hold=order is not None)
        on_version = lambda update: live.on_version(node, update)  # noqa: E731
    else:
        writer = TextOrJsonWriter(out, as_json=args.json, prefix=f"[{args.client_id}] ")
        shown = _Shown(writer, hold=order is not None)
        on_version = _tape_lines(shown, spec) if not args.json else (lambda _update: None)
    node = ClientNode(
        transport,
        args.client_id,
        spec,
        emit=shown,
        head_interval=following[0],
        long_poll_ms=following[1],
        on_version=on_version,
        signing_key=signing_key,
        matcher_key=trusted,
        trust_matcher=trust_matcher,
        # A --once client follows the head by long polls: announcing it would only
        # leave a dead address in the grapes once it exits.
        listen=not args.once,
    )
    metrics.follow_replica(lambda: (node.replica.seq, node.head.seq))
    deadline = anyio.current_time() + args.timeout
    startup = min(args.timeout, 15.0)
    first_head: Head | None = None
    if order is not None or args.once:
        # Nothing is submitted (and no outcome believed) before the matcher is trusted.
        gate = await trusted_head(node, args, deadline, submitting=order is not None)
        if isinstance(gate, int):
            return gate
        first_head = gate
    async with anyio.create_task_group() as tg:
        if live is not None:
            await tg.start(live.run)
        try:
            with anyio.fail_after(startup + 2.0):  # the transport gives up first
                await tg.start(node.run)
        except (TimeoutError, TransportError) as exc:
            detail = (
                str(exc)
                if isinstance(exc, TransportError)
                else f"no answer in {seconds(startup + 2.0)}"
            )
            print(f"client: cannot serve through grape {args.grape}: {detail}", file=sys.stderr)
            tg.cancel_scope.cancel()
            return EXIT_UNREACHABLE
        shown({"event": "started", "clientId": args.client_id, "grape": args.grape})
        status = await _drive(node, args, order, shown, deadline, first_head)
        tg.cancel_scope.cancel()
    return status


def _tape_lines(emit: Emit, spec: MarketSpec) -> Callable[[ReplicaUpdate[Version]], None]:
    """Text mode's tape: one ``trade`` record per trade of any client."""

    def on_version(update: ReplicaUpdate[Version]) -> None:
        for event in update.events:
            if isinstance(event, Trade):
                emit(
                    {
                        "event": "trade",
                        "seq": event.seq,
                        "tradeId": event.trade_id,
                        "side": str(event.taker_side),
                        "price": str(spec.ticks_to_price(event.price)),
                        "amount": str(spec.lots_to_amount(event.amount)),
                    }
                )

    return on_version


def _outcome(node: ClientNode, seq: int, order: dict[str, Any]) -> tuple[str | None, int]:
    """What became of this run's command (seq `seq`), said for people, and the status."""
    events = [e for e in node.own_events if e.seq == seq]
    order_id = str(order.get("orderId", "?"))
    spec = node.spec
    if order.get("op") == "cancel":
        for event in events:
            if isinstance(event, OrderRejected):
                reason = REJECT_TEXT.get(event.reason, str(event.reason))
                return f"cancel of {order_id} failed: {reason} ({event.reason})", EXIT_REJECTED
            if isinstance(event, OrderCancelled):
                amount = spec.lots_to_amount(event.amount)
                return f"cancelled {order_id}: {amount} taken off the book", EXIT_OK
        return None, EXIT_OK
    what = "modify of" if order.get("op") == "modify" else "order"
    parts: list[str] = []
    filled = sum(e.amount for e in events if isinstance(e, Trade))
    if filled:
        parts.append(f"filled {spec.lots_to_amount(filled)}")
    for event in events:
        if isinstance(event, OrderRejected):
            reason = REJECT_TEXT.get(event.reason, str(event.reason))
            return f"{what} {order_id} rejected: {reason} ({event.reason})", EXIT_REJECTED
        if isinstance(event, OrderModified):
            price = spec.ticks_to_price(event.price)
            parts.insert(0, f"modified to {spec.lots_to_amount(event.amount)} at {price}")
        if isinstance(event, OrderRested):
            price = spec.ticks_to_price(event.price)
            parts.append(f"{spec.lots_to_amount(event.amount)} resting at {price}")
        if isinstance(event, OrderCancelled):
            parts.append(f"{spec.lots_to_amount(event.amount)} not filled ({event.reason})")
    if not parts:
        return None, EXIT_OK
    return f"order {order_id}: " + ", ".join(parts), EXIT_OK


def _not_confirmed(args: ClientArgs, order: dict[str, Any], why: str) -> int:
    """Say that `order` may still execute, how to check, and that a resend is safe."""
    order_id = order.get("orderId", "?")
    resend = (
        f"resending the same modify with {REQUEST_ID_FIELD}={order.get(REQUEST_ID_FIELD, '?')}"
        " is safe (a repeat is answered, never applied twice)"
        if order.get("op") == "modify"
        else f"resending the same command with orderId={order_id} is safe (a repeat is"
        " answered, never queued twice)"
    )
    print(
        f"client: NOT CONFIRMED: {order.get('op', 'new')} {order_id} {why}; it may still"
        f" execute. Check with `dex order {args.client_id} {order_id}`; {resend}",
        file=sys.stderr,
    )
    return EXIT_NOT_CONFIRMED


async def _submit(
    node: ClientNode,
    args: ClientArgs,
    order: dict[str, Any],
    shown: _Shown,
    left: Callable[[], float],
) -> tuple[int | None, int]:
    """Submit `order`: its seq and `EXIT_OK`, or None and the exit status when it was
    not taken (or may have been: said, with what to do)."""
    try:
        submitted: SubmitReply | OrderRefused | NotAcknowledged
        submitted = await node.submit(order, timeout=left())
    except (OrderRefused, NotAcknowledged) as exc:
        submitted = exc
    return _answered(args, order, shown, submitted)


def _answered(
    args: ClientArgs,
    order: dict[str, Any],
    shown: _Shown,
    submitted: SubmitReply | OrderRefused | NotAcknowledged,
) -> tuple[int | None, int]:
    """What `_submit` makes of the answer to `order`."""
    op = str(order.get("op", "new"))
    if isinstance(submitted, OrderRefused):
        shown.start_at(math.inf)
        shown({"event": "refused", "error": str(submitted), "orderId": order.get("orderId")})
        shown.close()
        return None, EXIT_FAILED
    if isinstance(submitted, NotAcknowledged):
        if submitted.maybe_taken:
            return None, _not_confirmed(args, order, f"was not acknowledged ({submitted})")
        print(
            f"client: cannot reach the exchange through grape {args.grape}: {submitted};"
            " the order was not sent",
            file=sys.stderr,
        )
        return None, EXIT_UNREACHABLE
    order["orderId"] = submitted.order_id
    shown({"event": "submitted", "seq": submitted.seq, "orderId": submitted.order_id, "op": op})
    return submitted.seq, EXIT_OK


async def _drive(
    node: ClientNode,
    args: ClientArgs,
    order: dict[str, Any] | None,
    shown: _Shown,
    deadline: float,
    first_head: Head | None,
) -> int:
    def left() -> float:
        return max(deadline - anyio.current_time(), 0.01)

    target: int | None = None
    if order is not None and order.get("op") == CANCEL_ALL:
        return await _cancel_all(node, args, shown, deadline, first_head)
    if order is not None:
        seq, status = await _submit(node, args, order, shown, left)
        if seq is None:
            shown.start_at(math.inf)
            return status
        target = seq
        shown.start_at(target, str(order.get("op", "new")))
    if not args.once:
        await anyio.sleep_forever()
    if target is None:
        assert first_head is not None  # --once: the head was asked before anything else
        target = first_head.seq
    with anyio.move_on_after(left()):
        await node.wait_for_seq(target)
        outcome, status = _outcome(node, target, order) if order is not None else (None, EXIT_OK)
        done: Record = {"event": "done", "seq": node.replica.seq, "book": node.book_hash}
        if outcome is not None:
            done["outcome"] = outcome
        shown(done)
        return status
    waited = f"(replica at seq {node.replica.seq} after {seconds(args.timeout)})"
    if order is not None:
        return _not_confirmed(args, order, f"was taken as seq {target} but not seen {waited}")
    print(f"client: the replica did not reach seq {target} {waited}", file=sys.stderr)
    return EXIT_UNREACHABLE


async def _cancel_all(
    node: ClientNode, args: ClientArgs, shown: _Shown, deadline: float, head: Head | None
) -> int:
    """``op=cancelAll``: one signed cancel per resting order of this client.

    The orders are those of the verified replica once it holds the head first seen (an
    order submitted meanwhile, by another run of this client, may be missed); a cancel
    that finds its order gone already (filled meanwhile) counts as done.
    """

    def left() -> float:
        return max(deadline - anyio.current_time(), 0.01)

    assert head is not None  # asked before anything else
    with anyio.move_on_after(left()):
        await node.wait_for_seq(head.seq)
    if node.replica.seq < head.seq:
        shown.start_at(math.inf)
        print(
            f"client: nothing cancelled: the replica did not reach the head (seq {head.seq})"
            f" in {seconds(args.timeout)}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    orders = node.own_orders()
    seqs: list[tuple[int, str]] = []
    status = EXIT_OK
    cancels = [
        {"clientId": args.client_id, "op": "cancel", "orderId": resting.order_id}
        for resting in orders
    ]
    # Sent at once: they travel in one submit_order batch (ClientNode.submits).
    answers = await node.submit_many(cancels, timeout=left())
    for cancel, answer in zip(cancels, answers, strict=True):
        seq, status = _answered(args, cancel, shown, answer)
        if seq is None:
            break
        seqs.append((seq, cancel["orderId"]))
    shown.start_at(seqs[0][0] if seqs else math.inf, "cancel")
    if seqs:
        with anyio.move_on_after(left()):
            await node.wait_for_seq(seqs[-1][0])
        if node.replica.seq < seqs[-1][0]:
            why = f"(and {len(seqs) - 1} more) was taken but not seen in {seconds(args.timeout)}"
            return _not_confirmed(args, {"op": "cancel", "orderId": seqs[-1][1]}, why)
    cancelled = gone = 0
    for seq, _order_id in seqs:
        for event in (e for e in node.own_events if e.seq == seq):
            if isinstance(event, OrderCancelled):
                cancelled += 1
            elif isinstance(event, OrderRejected):
                gone += 1  # filled (or cancelled) since the replica listed it
    outcome = f"cancelAll: {cancelled} of {len(orders)} resting orders cancelled"
    if gone:
        outcome += f", {gone} gone meanwhile"
    if len(seqs) < len(orders):
        outcome += f", {len(orders) - len(seqs)} not confirmed"
    shown({"event": "done", "seq": node.replica.seq, "book": node.book_hash, "outcome": outcome})
    if not args.once and status == EXIT_OK:
        await anyio.sleep_forever()
    return status


PUSH_ONLY_ENV = "DEX_TEST_PUSH_ONLY"
"""A test-only switch: set to ``1``, a watcher asks ``orderbook_head`` once at start and
then only when a pushed root tells it to (no long poll, an hour between plain polls).
The chaos suite runs such watchers so a push lost under a crash fails the run instead
of being covered by the long poll; an operator has no use for it."""


def push_only_following(environ: Mapping[str, str]) -> tuple[float, int]:
    """``(head_interval, long_poll_ms)`` for the client program: the defaults (1 s, a
    10 s long poll), or push only when `PUSH_ONLY_ENV` is ``1``.

    Raises:
        ValueError: `PUSH_ONLY_ENV` is set to something else than ``0``, ``1`` or empty.
    """
    value = environ.get(PUSH_ONLY_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{PUSH_ONLY_ENV} must be 0 or 1, not {value!r}")
    return (3600.0, 0) if value == "1" else (1.0, 10_000)


def main(argv: list[str] | None = None) -> int:
    """The program behind `bin/client`; returns the exit status."""
    words = sys.argv[1:] if argv is None else argv
    try:
        args = parse_client_args(words, default_client_id=f"watcher-{os.getpid()}")
    except ArgumentError as exc:
        print(f"client: {exc}\nhint: --help lists every word and flag", file=sys.stderr)
        return EXIT_USAGE
    if args.help:
        print(USAGE)
        return EXIT_OK
    try:
        head_interval, long_poll_ms = push_only_following(os.environ)
    except ValueError as exc:
        print(f"client: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def amain() -> int:
        try:
            transport = open_transport(
                "grenache",
                grape=args.grapes,
                grape_timeout=min(args.timeout, 5.0),
            )
        except (TransportError, ValueError) as exc:
            print(f"client: cannot use grape {args.grape}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        async with transport:
            return await run_client(
                args, transport, sys.stdout, head_interval=head_interval, long_poll_ms=long_poll_ms
            )

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
