"""Coalescing submits: the orders a client has in flight at once travel in one request.

A market maker replaces its quotes in bursts (a cancel and a new order per level); one
``submit_order`` request per order pays the request's costs per order, on both sides.
`SubmitCoalescer` holds the first submit of a burst for a short linger (bounded:
`DEFAULT_LINGER`), takes every submit made meanwhile, and sends them as one batch
(`exchange.protocol.submit_batch`), split to stay within the batch limits. Each order
is still signed alone and answered alone; a lone order goes as the single payload of
the seed, so nothing changes for a client that sends one order at a time except the
linger. A sequencer that does not take batches (it refuses the array as a whole) gets
the orders one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from exchange.protocol import (
    MAX_SUBMIT_BYTES,
    MAX_SUBMIT_ORDERS,
    RETRYABLE_CODES,
    SUBMIT_ORDER,
    BadMessage,
    batch_reply_from_wire,
    submit_batch_bytes,
)
from transports import JSON, RemoteError, Transport, TransportError

__all__ = ["DEFAULT_LINGER", "SubmitCoalescer"]

DEFAULT_LINGER = 0.002
"""Seconds the first submit of a burst waits for others (docs/benchmarks.md measures
what it costs one lone order and what it saves a burst)."""


@dataclass(eq=False)
class _Pending:
    payload: JSON
    size: int
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: JSON = None
    error: TransportError | None = None

    def settle(self, reply: JSON, error: TransportError | None) -> None:
        self.reply, self.error = reply, error
        self.done.set()


class SubmitCoalescer:
    """Sends ``submit_order`` payloads, those made within one linger together.

    Args:
        transport: where ``submit_order`` is served.
        linger: seconds the first payload of a batch waits for others (0: only those
            made in the same turn of the event loop).
        max_orders: the most orders per request (at most the protocol's limit).
        max_bytes: the most bytes of compact JSON per request (idem).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        linger: float = DEFAULT_LINGER,
        max_orders: int = MAX_SUBMIT_ORDERS,
        max_bytes: int = MAX_SUBMIT_BYTES,
        name: str = SUBMIT_ORDER,
    ) -> None:
        if not 1 <= max_orders <= MAX_SUBMIT_ORDERS or not 1 <= max_bytes <= MAX_SUBMIT_BYTES:
            raise ValueError("max_orders and max_bytes must be within the protocol's limits")
        self.transport = transport
        self.name = name
        """The ``submit_order`` name of the market (`exchange.protocol.market_names`)."""
        self.linger = linger
        self.max_orders = max_orders
        self.max_bytes = max_bytes
        self._pending: list[_Pending] = []
        self.requests = 0
        """How many ``submit_order`` requests were sent (for measurements)."""

    async def request(self, payload: JSON, *, timeout: float) -> JSON:
        """Send one signed payload (with whatever others are made meanwhile) and return
        its own reply: ``{"seq", "orderId"}``.

        Raises:
            transports.RemoteError: the order's own refusal (``"<CODE>: <detail>"``), or
                the request's (then every order of it gets it).
            transports.TransportError: the request failed (every order of it gets it).
        """
        pending = _Pending(payload, submit_batch_bytes([payload]))
        self._pending.append(pending)
        if len(self._pending) == 1:
            # The first of a burst sends it, whatever happens to its own caller: the
            # others wait on it. Bounded by the linger and one request's timeout.
            with anyio.CancelScope(shield=True):
                await anyio.sleep(self.linger)
                await self._flush(timeout)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.reply

    async def _flush(self, timeout: float) -> None:
        """Send every pending payload, in requests within the limits, concurrently."""
        pending, self._pending = self._pending, []
        chunks: list[list[_Pending]] = []
        size = 0
        for item in pending:
            if (
                not chunks
                or len(chunks[-1]) >= self.max_orders
                or size + item.size > self.max_bytes
            ):
                chunks.append([])
                size = 2  # the brackets
            chunks[-1].append(item)
            size += item.size + 1
        try:
            async with anyio.create_task_group() as tg:
                for chunk in chunks:
                    tg.start_soon(self._send, chunk, timeout)
        finally:  # nobody waits for ever, whatever went wrong
            for item in pending:
                if not item.done.is_set():
                    item.settle(None, TransportError("submit_order: not sent"))

    async def _send(self, chunk: list[_Pending], timeout: float) -> None:
        if len(chunk) == 1:
            await self._send_one(chunk[0], timeout)
            return
        self.requests += 1
        try:
            reply = await self.transport.request(
                self.name, [item.payload for item in chunk], timeout=timeout
            )
            results = batch_reply_from_wire(reply, len(chunk))
        except RemoteError as exc:
            if exc.message.startswith(RETRYABLE_CODES):
                for item in chunk:
                    item.settle(None, exc)
                return
            # Refused as a whole (a sequencer that takes no batches): one by one.
            async with anyio.create_task_group() as tg:
                for item in chunk:
                    tg.start_soon(self._send_one, item, timeout)
            return
        except TransportError as exc:
            for item in chunk:
                item.settle(None, exc)
            return
        except BadMessage as exc:
            for item in chunk:
                item.settle(None, RemoteError(f"submit_order replied {reply!r}: {exc}"))
            return
        for item, result in zip(chunk, results, strict=True):
            if isinstance(result, str):
                item.settle(None, RemoteError(result))
            else:
                item.settle(result.to_wire(), None)

    async def _send_one(self, item: _Pending, timeout: float) -> None:
        self.requests += 1
        try:
            reply = await self.transport.request(self.name, item.payload, timeout=timeout)
        except TransportError as exc:
            item.settle(None, exc)
        else:
            item.settle(reply, None)
