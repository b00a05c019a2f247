"""What the exchange's tests share: waiting on state, replaying through the core, a rig.

`replay` and `replay_commands` build the book a history describes with
`exchange.protocol.apply_entry` alone, the oracle every worker test compares with.
`running_exchange` starts the sequencer and the matcher on a memory or loopback
network, with a client transport to submit through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from exchange.matcher import ProcessWorker
from exchange.protocol import SUBMIT_ORDER, apply_entry, parse_entry
from exchange.sequencer import Journal, SubmitWorker
from orderbook_core import DEFAULT_SPEC, Event, MarketSpec, OrderBook
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, signed
from transports import (
    LoopbackNetwork,
    MemoryNetwork,
    Transport,
    TransportError,
    TransportKind,
    open_transport,
)

__all__ = [
    "ExchangeRig",
    "kind_of",
    "replay",
    "replay_commands",
    "running_exchange",
    "wait_until",
]


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 20, interval: float = 0.01
) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state other tasks change
            await anyio.sleep(interval)


def replay(journal: Journal, spec: MarketSpec = DEFAULT_SPEC) -> tuple[OrderBook, list[Event]]:
    """The book the journal describes, and every event, through the core alone."""
    book = OrderBook(spec)
    events: list[Event] = []
    for entry in journal.entries():
        events.extend(apply_entry(book, entry))
    return book, events


def replay_commands(
    commands: Iterable[dict[str, Any]], ts: int = 1_000, spec: MarketSpec = DEFAULT_SPEC
) -> OrderBook:
    """The book after applying wire `commands` as seq 1, 2, ... at timestamp `ts`."""
    book = OrderBook(spec)
    for seq, command in enumerate(commands, start=1):
        apply_entry(book, parse_entry(seq, ts, command, spec))
    return book


def kind_of(network: MemoryNetwork) -> TransportKind:
    """The transport kind that joins `network`."""
    return "loopback" if isinstance(network, LoopbackNetwork) else "memory"


@dataclass
class ExchangeRig:
    """Both workers on one network, a client transport, and a matcher that can restart."""

    network: MemoryNetwork
    journal: Journal
    submitter: SubmitWorker
    client: Transport
    tmp_path: Path
    tg: TaskGroup
    processor: ProcessWorker | None = None
    process_scope: anyio.CancelScope | None = None
    process_done: anyio.Event | None = None

    async def start_processor(self, db_name: str = "process.db") -> ProcessWorker:
        """Run a matcher (on its own transport) until `stop_processor`."""
        scope = anyio.CancelScope()
        done = anyio.Event()

        async def run(*, task_status: TaskStatus[ProcessWorker]) -> None:
            try:
                with scope:
                    async with open_transport(kind_of(self.network), network=self.network) as t:
                        worker = ProcessWorker(
                            t,
                            self.tmp_path / db_name,
                            sequencer_key=SEQUENCER_PUBLIC,
                            signing_key=MATCHER_KEY,
                        )
                        async with anyio.create_task_group() as tg:
                            await tg.start(worker.run)
                            task_status.started(worker)
            finally:
                done.set()

        self.processor = await self.tg.start(run)
        self.process_scope, self.process_done = scope, done
        return self.processor

    async def stop_processor(self) -> None:
        """Stop the matcher and wait until it has stopped serving."""
        assert self.process_scope is not None
        assert self.process_done is not None
        self.process_scope.cancel()
        await self.process_done.wait()
        self.processor = None

    async def submit(self, payload: dict[str, Any], timeout: float = 1.0) -> Any:
        """Submit as a careful client does: signed (unless it is already), retried (same
        orderId) until answered."""
        if "sig" not in payload:
            payload = signed(payload)
        while True:
            try:
                return await self.client.request(SUBMIT_ORDER, payload, timeout=timeout)
            except TransportError:
                await anyio.sleep(0.01)

    async def settled(self, timeout: float = 30) -> ProcessWorker:
        """Wait until the matcher has applied the whole journal."""
        head = self.journal.head()
        await wait_until(
            lambda: self.processor is not None and self.processor.head_seq == head, timeout
        )
        assert self.processor is not None
        return self.processor


@asynccontextmanager
async def running_exchange(
    tmp_path: Path, network: MemoryNetwork, *, process: bool = True, **submit_options: Any
) -> AsyncIterator[ExchangeRig]:
    """Both workers on `network` (the matcher only with `process`), until the block ends."""
    kind = kind_of(network)
    with Journal(tmp_path / "journal.db") as journal:
        async with (
            open_transport(kind, network=network) as submit_transport,
            open_transport(kind, network=network) as client,
            anyio.create_task_group() as tg,
        ):
            options: dict[str, Any] = {
                "backoff": 0.01,
                "max_backoff": 0.1,
                "seed": 3,
                "signing_key": SEQUENCER_KEY,
            }
            options.update(submit_options)
            submitter = SubmitWorker(submit_transport, journal, **options)
            await tg.start(submitter.run)
            rig = ExchangeRig(network, journal, submitter, client, tmp_path, tg)
            if process:
                await rig.start_processor()
            yield rig
            tg.cancel_scope.cancel()
