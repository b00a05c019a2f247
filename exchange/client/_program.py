"""The client program behind `bin/client.py`: arguments in, records out, an exit status.

`main()` parses the challenge's ``key=value`` words (`exchange.client._args`), opens the
Grenache transport, runs a `ClientNode`, submits the order if there is one, and prints
what happens to it (`exchange.client._output`). Exit statuses are `EXIT_*` below and in
docs/operations.md.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

import anyio

from exchange.client._args import USAGE, ClientArgs, parse_client_args
from exchange.client._node import ClientNode, new_order_id
from exchange.client._output import Emit, TextOrJsonWriter
from exchange.protocol import ArgumentError, BadMessage, OrderRefused
from orderbook_core import DEFAULT_SPEC, MarketSpec, ValidationError, parse_command
from transports import Transport, TransportError, open_transport

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
    "run_client",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports when the output pipe closed


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
            except (TransportError, BadMessage):
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
