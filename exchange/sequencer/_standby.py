"""The sequencer as a standby: wait for the writer's lease, take over, step down.

Several sequencers may share one JetStream journal; the one holding the lease
(`WriterLease`, kept in JetStream by `exchange.sequencer._lease`) is active: it serves
``submit_order`` (so only it is announced), appends and forwards, and renews the lease.
The others serve nothing and try to take the lease every `WriterLease.poll` seconds.
Whoever takes it reads the journal's head and client keys again, and its forwarder
starts from the journal's acked mark, so it finishes what the last active one left
unforwarded. Losing the lease (a renewal finds another holder's, or none), or an
append refused because another writer appended, is a step-down: serving stops, the log
says so, `Metrics.stepped_down` counts it, and the worker stands by again. A lease
that merely ran out (paused, or no answer from NATS) stops the appends, not the
serving: submits get ERR_UNAVAILABLE until a renewal answers either way.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange.protocol import StorageUnavailable
from exchange.runtime import Metrics, Outage
from exchange.sequencer._backend import JournalBackend, SteppedDown, WriterLease

__all__ = ["run_with_lease"]


class _Sequencer(Protocol):
    """What of `SubmitWorker` this needs."""

    journal: JournalBackend
    metrics: Metrics

    async def run_active(self, *, task_status: TaskStatus[int] = TASK_STATUS_IGNORED) -> None: ...

    async def catch_up(self) -> None: ...


_log = logging.getLogger("exchange.sequencer")


async def run_with_lease(
    worker: _Sequencer, lease: WriterLease, task_status: TaskStatus[int]
) -> None:
    """`SubmitWorker.run` with a lease: stand by, take the lease, catch up, serve while
    holding it, step down when it is lost (or an append is refused), and again."""
    started = False
    try:
        while True:
            await _take_lease(worker, lease)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_hold_lease, worker, lease)
                    port: int = await tg.start(worker.run_active)
                    worker.metrics.sequencer_active(True)
                    if not started:
                        task_status.started(port)
                        started = True
            except* SteppedDown:
                _log.warning("standby: stepped down; waiting for the writer's lease again")
            worker.metrics.sequencer_active(False)
            await anyio.to_thread.run_sync(lease.release)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lease.release)


async def _take_lease(worker: _Sequencer, lease: WriterLease) -> None:
    """Stand by until this holds `lease`, then take up the journal where it is."""
    outage = Outage(_log, "taking the writer's lease")
    holder: str | None = None
    while True:
        try:
            if await anyio.to_thread.run_sync(lease.acquire):
                await worker.catch_up()
                break
            outage.worked()
            current = await anyio.to_thread.run_sync(lease.current)
            if current != holder and current is not None:
                _log.info("standby: %s holds the writer's lease; waiting", current)
            holder = current
        except StorageUnavailable as exc:
            await anyio.to_thread.run_sync(lease.release)
            outage.failed(str(exc))
        await anyio.sleep(lease.poll)
    _log.info(
        "active: %s took the writer's lease of %s at seq %d",
        lease.holder,
        worker.journal.location,
        worker.journal.head(),
    )


async def _hold_lease(worker: _Sequencer, lease: WriterLease) -> None:
    """Renew `lease` while active; step down once another holder has it."""
    outage = Outage(_log, "renewing the writer's lease")
    while True:
        await anyio.sleep(lease.renew_every)
        try:
            held = await anyio.to_thread.run_sync(lease.renew)
        except StorageUnavailable as exc:
            # No answer: nobody else can take the lease without one either. Go on
            # serving; once the lease has run out, the journal refuses every append
            # (ERR_UNAVAILABLE) until a renewal says whether it is still this one's.
            outage.failed(f"{exc}{'' if lease.valid() else ' (not writing meanwhile)'}")
            continue
        outage.worked()
        if not held:
            _log.error("stepping down: lost the writer's lease of %s", worker.journal.location)
            worker.metrics.stepped_down()
            raise SteppedDown("lost the writer's lease")
