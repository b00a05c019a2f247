"""The submit_order worker: the exchange's sequencer (DESIGN principle 3).

It serves ``submit_order``: each payload is validated by the core's wire validator,
given the next gap-free sequence number and committed to the `Journal` (SQLite, fsynced)
*before* the reply ``{"seq": N, "orderId": "..."}`` goes out. A bad payload gets an
``ERR_VALIDATION: <field>: <rule>`` reply and stores nothing; a repeated
``(clientId, orderId)`` gets the first reply back and queues nothing.

A forwarder task sends the journal to ``process_order`` strictly in sequence order, one
command at a time, and retries each one (exponential backoff, capped, with jitter from a
seeded RNG) until the process worker acknowledges it. A command that fails or is refused
is retried, never skipped or reordered. When the process worker answers
``ERR_SEQ_GAP: expected <n>`` (it restarted from an older state, or lost it), the
forwarder rewinds and resends from ``n - 1``: the journal is the source of truth, the
process worker answers already-applied numbers idempotently, and it confirms ``n - 1``
only if it applied that very entry, so a state from another journal is not built upon.

Blocking SQLite calls run in a worker thread (``anyio.to_thread.run_sync``), one at a
time (an ``anyio.Lock``), so the event loop never blocks on the disk.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange._errors import ERR_SEQ_GAP, ERR_VALIDATION
from exchange._service import Refused, service_handler
from exchange.journal import GENERATED_ORDER_ID_PREFIX, Appended, Journal, generated_order_id
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    command_to_wire,
    parse_command,
)
from transports import JSON, RemoteError, Transport, TransportError

__all__ = ["SubmitWorker"]

_log = logging.getLogger("exchange.submit")

_T = TypeVar("_T")

_GAP_RE = re.compile(rf"^{ERR_SEQ_GAP}: expected (\d+)")

_PLACEHOLDER_ORDER_ID = generated_order_id(0)
"""Given to the validator when the payload has no orderId; replaced once seq is known."""

_ACK_PERSIST_EVERY = 64
"""Persist the acked mark at least every this many commands (and whenever idle)."""


class SubmitWorker:
    """Serves ``submit_order`` and forwards the journal to ``process_order``.

    Args:
        transport: the network to serve and call on.
        journal: the durable queue; the worker does not close it.
        spec: the market's specification (tick and lot sizes) for validation.
        port: where to serve (0: a free port).
        seed: seeds the retry jitter, so a test run is reproducible.
        request_timeout: seconds to wait for one ``process_order`` reply.
        backoff: the first retry delay in seconds; it doubles per failure.
        max_backoff: the cap of the retry delay in seconds.
        idle_check: when the queue is empty, ask ``orderbook_head`` this often (seconds)
            whether the process worker fell behind (e.g. lost its state).
        clock: returns the sequencer's timestamp in ms (default: the wall clock).
    """

    def __init__(
        self,
        transport: Transport,
        journal: Journal,
        spec: MarketSpec = DEFAULT_SPEC,
        *,
        port: int = 0,
        seed: int = 0,
        request_timeout: float = 5.0,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        idle_check: float = 5.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.transport = transport
        self.journal = journal
        self.spec = spec
        self.port = port
        self.request_timeout = request_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.idle_check = idle_check
        self._clock = clock
        self._random = random.Random(seed)
        self._db_lock = anyio.Lock()
        self._appended = anyio.Event()
        self.forwarded = 0
        """The highest sequence number process_order has acknowledged in this run."""

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED) -> None:
        """Serve ``submit_order`` and run the forwarder until cancelled.

        Calls ``task_status.started(port)`` once ``submit_order`` is announced.

        Raises:
            transports.TransportError: cannot serve (listen or announce).
        """
        handlers = {"submit_order": service_handler("submit_order", self.submit, logger=_log)}
        async with anyio.create_task_group() as tg:
            port: int = await tg.start(partial(self.transport.serve, handlers, port=self.port))
            tg.start_soon(self.forward)
            _log.info("submit_order: serving on port %d (journal %s)", port, self.journal.path)
            task_status.started(port)

    # ------------------------------------------------------------------ submit_order

    async def submit(self, payload: JSON) -> JSON:
        """Handle one ``submit_order`` request: validate, journal, reply.

        Returns:
            ``{"seq": N, "orderId": "..."}`` once the command is durable.

        Raises:
            orderbook_core.ValidationError: the payload breaks a rule (nothing stored).
            Refused: ERR_VALIDATION for a client order id in the generated namespace.
        """
        command = parse_command(
            payload, self.spec, seq=0, ts=0, default_order_id=_PLACEHOLDER_ORDER_ID
        )
        op, order_id = _dedupe_key(command)
        if isinstance(command, NewOrder):
            if command.order_id == _PLACEHOLDER_ORDER_ID and _no_order_id(payload):
                order_id = None
            elif command.order_id.startswith(GENERATED_ORDER_ID_PREFIX):
                raise Refused(
                    ERR_VALIDATION,
                    f"orderId: must not start with {GENERATED_ORDER_ID_PREFIX!r}"
                    " (reserved for generated ids)",
                )
        wire = command_to_wire(command, self.spec)
        if order_id is None:
            wire.pop("orderId", None)  # the journal writes the generated one
        ts = self._clock() if self._clock is not None else None
        appended: Appended = await self._db(
            partial(
                self.journal.append,
                command.client_id,
                order_id,
                wire,
                op=op,
                dedupe=op != "modify",
                ts=ts,
            )
        )
        if order_id is None:
            order_id = generated_order_id(appended.seq)
        if appended.is_new:
            _log.info(
                "accepted seq=%d client=%s order=%s op=%s",
                appended.seq,
                command.client_id,
                order_id,
                op,
            )
            self._appended.set()
            self._appended = anyio.Event()
        else:
            _log.info(
                "repeat of seq=%d client=%s order=%s", appended.seq, command.client_id, order_id
            )
        return {"seq": appended.seq, "orderId": order_id}

    # ------------------------------------------------------------------ forwarder

    async def forward(self) -> None:
        """Send the journal to ``process_order`` in sequence order, forever.

        Starts after the journal's acked mark. Runs until cancelled; never raises for a
        network failure or a refusal (it logs and retries the same command).
        """
        acked = await self._db(self.journal.acked)
        persisted = acked
        next_seq = acked + 1
        failures = 0
        while True:
            appended = self._appended  # taken before reading: an append after it wakes us
            entry = await self._db(partial(self.journal.get, next_seq))
            if entry is None:
                if persisted < acked:
                    await self._db(partial(self.journal.mark_acked, acked))
                    persisted = acked
                with anyio.move_on_after(self.idle_check):
                    await appended.wait()
                    continue
                next_seq = await self._check_head(next_seq)
                continue
            payload = {"seq": entry.seq, "ts": entry.ts, "command": entry.command}
            try:
                reply = await self.transport.request(
                    "process_order", payload, timeout=self.request_timeout
                )
            except RemoteError as exc:
                gap = _GAP_RE.match(exc.message)
                if gap is not None and 1 <= int(gap.group(1)) <= next_seq:
                    expected = int(gap.group(1))
                    if expected != next_seq:
                        _log.warning("process_order expects seq %d; resending from there", expected)
                        next_seq = _rewind(expected)
                        failures = 0
                        continue
                _log.warning("process_order refused seq=%d: %s", entry.seq, exc.message)
                failures = await self._sleep_backoff(failures)
                continue
            except TransportError as exc:
                _log.warning(
                    "process_order failed for seq=%d: %s: %s", entry.seq, type(exc).__name__, exc
                )
                failures = await self._sleep_backoff(failures)
                continue
            if not (isinstance(reply, dict) and reply.get("seq") == entry.seq):
                _log.warning("process_order sent a bad reply for seq=%d: %.200r", entry.seq, reply)
                failures = await self._sleep_backoff(failures)
                continue
            _log.debug("forwarded seq=%d root=%s", entry.seq, reply.get("root"))
            failures = 0
            acked = max(acked, entry.seq)
            self.forwarded = max(self.forwarded, entry.seq)
            next_seq = entry.seq + 1
            if acked - persisted >= _ACK_PERSIST_EVERY:
                await self._db(partial(self.journal.mark_acked, acked))
                persisted = acked

    async def _check_head(self, next_seq: int) -> int:
        """While idle, ask ``orderbook_head`` whether the process worker fell behind.

        A process worker that lost its state (or restarted from an older copy) would
        otherwise learn about the missing commands only with the next submitted one.

        Returns:
            Where to resume forwarding: `next_seq`, or the worker's head + 1 if lower.
        """
        try:
            reply = await self.transport.request(
                "orderbook_head", None, timeout=self.request_timeout
            )
        except TransportError as exc:
            _log.debug("orderbook_head failed: %s", exc)
            return next_seq
        head = reply.get("seq") if isinstance(reply, dict) else None
        if type(head) is int and 0 <= head < next_seq - 1:
            _log.warning("process_order is at seq %d; resending from %d", head, head + 1)
            return _rewind(head + 1)
        return next_seq

    async def _sleep_backoff(self, failures: int) -> int:
        """Sleep before retry number `failures + 1`; return the new failure count."""
        delay = min(self.max_backoff, self.backoff * 2 ** min(failures, 30))
        await anyio.sleep(delay * (0.5 + 0.5 * self._random.random()))
        return failures + 1

    # ------------------------------------------------------------------ helpers

    async def _db(self, call: Callable[[], _T]) -> _T:
        """Run a blocking journal call in a worker thread, one at a time."""
        async with self._db_lock:
            return await anyio.to_thread.run_sync(call)


def _rewind(expected: int) -> int:
    """Where to resume when the process worker expects `expected` next.

    One entry earlier: the process worker answers ``expected - 1`` from its record only
    if it applied that very entry (same command, same timestamp), so a process worker
    whose state comes from another journal (an old copy, another run) is refused
    loudly before anything of this journal is applied on top of it.
    """
    return max(1, expected - 1)


def _dedupe_key(command: Command) -> tuple[str, str | None]:
    """Return the journal's `(op, order_id)` dedupe key for `command`.

    A new order and a cancel are deduplicated per `(clientId, orderId)` each; a modify
    is not (it sets absolute values, so a repeat is harmless, while two different modifies
    of one order are both meant), which the journal expresses with op ``"modify"``.
    """
    if isinstance(command, NewOrder):
        return "new", command.order_id
    if isinstance(command, CancelOrder):
        return "cancel", command.order_id
    assert isinstance(command, ModifyOrder)
    return "modify", command.order_id


def _no_order_id(payload: Any) -> bool:
    return isinstance(payload, dict) and "orderId" not in payload
