"""The ``submit_order`` handler: one signed order, or a batch of them answered per order.

The worker's `submit` serves one order and its `submit_many` a batch (`submit_each`);
`submit_handler` puts them behind the one service name: it tells the two payloads
apart, checks a batch's envelope (`exchange.protocol.submit_batch`: count and bytes,
refused as a whole), and turns each element's refusal into its entry of the reply,
counted and logged as a single request's refusal would be.

A batch answers and journals exactly what its orders sent one by one, in order, would
have (a property test checks it): each is verified and validated alone; the keys not
queued already are looked up in one trip; then, with no await, each is checked again
(its binding: an earlier order of the batch may have bound its clientId) and answered
as a repeat or numbered, in order, so the new ones take consecutive numbers, most
often in one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import anyio

from exchange.protocol import (
    ERR_INTERNAL,
    RETRYABLE_CODES,
    SUBMIT_ORDER,
    Entry,
    SubmitReply,
    batch_reply,
    error_string,
    service_handler,
    submit_batch,
    verify_order,
)
from exchange.runtime import Metrics, observe_refusals
from exchange.sequencer._submitted import DedupeKey, check_repeat, submitted_command
from orderbook_core import Command, MarketSpec
from transports import JSON, Handler

__all__ = ["Sequencing", "SubmitMany", "submit_each", "submit_handler"]

_log = logging.getLogger("exchange.sequencer")


class _Queued(Protocol):
    @property
    def entry(self) -> Entry: ...

    @property
    def committed(self) -> anyio.Event: ...

    @property
    def error(self) -> BaseException | None: ...

    def reply(self) -> JSON: ...


_Q = TypeVar("_Q", bound=_Queued)
_Q_co = TypeVar("_Q_co", bound=_Queued, covariant=True)


class Sequencing(Protocol[_Q_co]):
    """What `submit_each` needs of the worker: its numbering steps, as `submit` takes
    them (`exchange.sequencer.SubmitWorker`)."""

    @property
    def spec(self) -> MarketSpec: ...

    @property
    def _queued_keys(self) -> Mapping[DedupeKey, _Q_co]: ...

    def _binding(self, client_id: str, public_key: str) -> str | None: ...

    async def _look_up_many(self, keys: Sequence[DedupeKey]) -> list[Entry | None]: ...

    def _enqueue(self, command: Command, key: DedupeKey | None, binding: str | None) -> _Q_co: ...


SubmitMany = Callable[[Sequence[JSON]], Awaitable[list[JSON | Exception]]]
"""Serves a batch: per order, its reply or the exception that refused it."""


def submit_handler(
    submit: Callable[[JSON], Awaitable[JSON]],
    submit_many: SubmitMany,
    metrics: Metrics,
    *,
    logger: logging.Logger,
) -> Handler:
    """The transport handler of ``submit_order``: `submit` for one order (the seed's
    payload, unchanged), `submit_many` for a JSON array of them."""

    async def handle(payload: JSON) -> JSON:
        orders = submit_batch(payload)
        if orders is None:
            return await submit(payload)
        results = await submit_many(orders)
        for index, result in enumerate(results):
            if isinstance(result, Exception):
                _refused(index, result, metrics, logger)
        return batch_reply(results)

    observed = observe_refusals(SUBMIT_ORDER, handle, metrics)
    return service_handler(SUBMIT_ORDER, observed, logger=logger)


def _refused(index: int, exc: Exception, metrics: Metrics, logger: logging.Logger) -> None:
    """Count and log one element's refusal as `service_handler` does a request's."""
    message = error_string(exc)
    metrics.refused(SUBMIT_ORDER, message.partition(":")[0])
    if message.startswith(ERR_INTERNAL):
        logger.error("%s: order %d: unexpected failure", SUBMIT_ORDER, index, exc_info=exc)
    elif message.startswith(RETRYABLE_CODES):
        logger.debug("%s: order %d refused: %s", SUBMIT_ORDER, index, message)
    else:
        logger.info("%s: order %d refused: %s", SUBMIT_ORDER, index, message)


async def submit_each(worker: Sequencing[_Q], payloads: Sequence[JSON]) -> list[JSON | Exception]:
    """Serve a batch on `worker`: per payload, its reply or the exception that refuses it
    (what `worker.submit` would have answered, the payloads sent one by one in order)."""
    results: list[JSON | Exception] = []
    waiting: dict[int, _Q] = {}
    checked: list[tuple[int, Command, DedupeKey, str, _Q | None]] = []
    for index, payload in enumerate(payloads):
        try:
            body, public_key = verify_order(payload, worker.spec.market)
            command, key = submitted_command(body, worker.spec)
            worker._binding(command.client_id, public_key)
        except Exception as exc:
            results.append(exc)
            continue
        results.append(None)
        checked.append((index, command, key, public_key, worker._queued_keys.get(key)))
    unqueued = list(dict.fromkeys(key for _, _, key, _, twin in checked if twin is None))
    try:
        found = dict(zip(unqueued, await worker._look_up_many(unqueued), strict=True))
    except Exception as exc:  # the journal could not be read: those orders are refused
        found, missed = {}, set(unqueued)
        for index, _, key, _, _ in checked:
            if key in missed:
                results[index] = exc
        checked = [item for item in checked if item[2] not in missed]
    # No await from here to the last one queued: bindings and twins are seen in order.
    for index, command, key, public_key, twin in checked:
        try:
            binding = worker._binding(command.client_id, public_key)
            entry = found.get(key)
            if twin is None and entry is not None:
                check_repeat(command, entry, worker.spec)
                _log.info("repeat of seq=%d client=%s id=%s", entry.seq, *key[::2])
                results[index] = SubmitReply(entry.seq, entry.command.order_id).to_wire()
                continue
            queued = twin or worker._queued_keys.get(key)
            if queued is not None:
                check_repeat(command, queued.entry, worker.spec)
            else:
                queued = worker._enqueue(command, key, binding)
            waiting[index] = queued
        except Exception as exc:
            results[index] = exc
    # Commits settle in queue order, so after one wait most of the others are settled
    # too: they are read without another trip through the event loop.
    for index, queued in waiting.items():
        if not queued.committed.is_set():
            await queued.committed.wait()
        error = queued.error
        if error is None:
            results[index] = queued.reply()
        elif isinstance(error, Exception):
            results[index] = error
        else:
            raise error
    return results
