"""examples/market_maker.py: in one process as a reader runs it, and joined to an
exchange on real grapes (the workers run here, as the run book's would), where it
quotes, re-quotes after a fill, and withdraws its quotes on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import anyio.abc
import pytest
from support.examples import EXAMPLES
from support.grapes import Grape, running_grapes
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC

from exchange import ClientNode, Journal, ProcessWorker, SubmitWorker
from transports import open_transport

SCRIPT = EXAMPLES / "market_maker.py"


def test_the_example_runs_in_one_process() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=90, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "quotes: bids 99.90x1 99.80x1 | asks 100.10x1 100.20x1 | position 0"
    # Short after the taker's buy: both sides move up, against the position.
    assert "quotes: bids 99.98x1 99.88x1 | asks 100.18x1 100.28x1 | position -1.5" in lines
    assert lines[-1] == "replicas and journal replay agree: True; maker quotes its plan: True"


@pytest.fixture(scope="module")
def private_grapes() -> Iterator[list[Grape]]:
    # The workers' service names are fixed: grapes shared with other tests would hold
    # their dead workers.
    with running_grapes(2) as grapes:
        yield grapes


class Lines:
    """The stdout of a running process, a line at a time."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self.stdout = process.stdout
        self.buffer = b""
        self.seen: list[str] = []

    async def until(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        with anyio.fail_after(timeout):
            while True:
                while b"\n" in self.buffer:
                    raw, self.buffer = self.buffer.split(b"\n", 1)
                    line = raw.decode()
                    self.seen.append(line)
                    if predicate(line):
                        return line
                try:
                    self.buffer += await self.stdout.receive()
                except anyio.EndOfStream:
                    raise AssertionError(f"exited; printed {self.seen}") from None


@asynccontextmanager
async def joined_maker(grape: Grape) -> AsyncIterator[tuple[anyio.abc.Process, Lines]]:
    process = await anyio.open_process(
        [sys.executable, str(SCRIPT), "--grape", grape.url],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, Lines(process)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()
            await process.aclose()


@pytest.mark.anyio
@pytest.mark.integration
async def test_the_maker_joins_an_exchange_on_real_grapes(
    private_grapes: list[Grape], tmp_path: Path
) -> None:
    first, second = private_grapes
    with Journal(tmp_path / "journal.db") as journal:
        async with (
            open_transport("grenache", grape=first.url) as submit_net,
            open_transport("grenache", grape=second.url) as process_net,
            open_transport("grenache", grape=second.url) as taker_net,
            anyio.create_task_group() as tg,
        ):
            await tg.start(
                ProcessWorker(
                    process_net,
                    tmp_path / "process.db",
                    sequencer_key=SEQUENCER_PUBLIC,
                    signing_key=MATCHER_KEY,
                ).run
            )
            await tg.start(SubmitWorker(submit_net, journal, signing_key=SEQUENCER_KEY).run)
            taker = ClientNode(taker_net, "taker")
            await tg.start(taker.run)
            async with joined_maker(first) as (maker, lines):
                await lines.until(lambda line: line.startswith("quotes: bids 99.90x1 99.80x1"))
                reply = await taker.submit({"side": "buy", "ordType": "market", "amount": "1.5"})
                await lines.until(lambda line: line == "fill: maker sell 1.000 @ 100.10 with taker")
                await lines.until(lambda line: line.endswith("| position -1.5"))
                os.kill(maker.pid, signal.SIGINT)  # Ctrl-C: withdraw, then exit 0
                done = await lines.until(lambda line: line.startswith("done: "))
                assert done == "done: bids - | asks - | position -1.5"
                with anyio.fail_after(10):
                    assert await maker.wait() == 0
            head = await taker.fetch_head()
            await taker.wait_for_seq(head.seq)
            assert head.seq > reply.seq
            assert [o for o in taker.book.orders() if o.client_id == "maker"] == []
            assert [t.maker_client_id for t in taker.fills] == ["maker", "maker"]
            tg.cancel_scope.cancel()
