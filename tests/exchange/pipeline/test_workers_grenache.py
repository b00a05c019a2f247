"""Both workers on real grapes (the challenge's command), over real Grenache HTTP.

The grapes are private to this module: the service names (`submit_order`, ...) are
fixed, and a grape keeps every dead peer announced for ever, so sharing grapes with
other tests would make this one talk to their dead workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.grapes import Grape, running_grapes
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, signed, verified_head
from support.ports import free_port

from exchange.matcher import ProcessWorker
from exchange.sequencer import Journal, SubmitWorker
from exchange.versions import VersionReader
from orderbook_core import DEFAULT_SPEC, OrderBook, parse_command
from transports import RemoteError
from transports.grenache import GrapeLink, GrenacheTransport

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(scope="module")
def private_grapes() -> Iterator[list[Grape]]:
    with running_grapes(2) as grapes:
        yield grapes


async def wait_until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state other tasks change
            await anyio.sleep(0.02)


async def test_orders_flow_through_both_workers_on_real_grapes(
    tmp_path: Path, private_grapes: list[Grape]
) -> None:
    first, second = private_grapes
    # A client that died long ago and stays announced: the normal case on CLI grapes.
    link = GrapeLink(second.url)
    try:
        await link.announce("orderbook_updated", free_port())
    finally:
        await link.aclose()
    with Journal(tmp_path / "journal.db") as journal:
        async with (
            GrenacheTransport(first.url) as submit_transport,
            GrenacheTransport(second.url) as process_transport,
            GrenacheTransport(first.url) as client,
            anyio.create_task_group() as tg,
        ):
            processor = ProcessWorker(
                process_transport,
                tmp_path / "process.db",
                sequencer_key=SEQUENCER_PUBLIC,
                signing_key=MATCHER_KEY,
            )
            await tg.start(processor.run)
            await tg.start(SubmitWorker(submit_transport, journal, signing_key=SEQUENCER_KEY).run)

            async def submit(payload: dict[str, Any]) -> Any:
                return await client.request("submit_order", signed(payload), timeout=5)

            sell = {"clientId": "c1", "orderId": "s1", "type": "Sell", "price": 100, "amount": 10}
            assert await submit(sell) == {"seq": 1, "orderId": "s1"}
            buy = {"clientId": "c2", "orderId": "b1", "type": "Buy", "price": 100, "amount": 7}
            assert await submit(buy) == {"seq": 2, "orderId": "b1"}
            assert await submit(sell) == {"seq": 1, "orderId": "s1"}
            with pytest.raises(RemoteError, match="ERR_VALIDATION: price: not a multiple"):
                await submit({**sell, "orderId": "s2", "price": "1.001"})

            await wait_until(lambda: processor.head_seq == 2)
            head = verified_head(await client.request("orderbook_head", None, timeout=5))
            assert head == {"seq": 2, "root": processor.head_root}
            # A peer on the other grape reads the version and gets the journal's book.
            version = await VersionReader(client, DEFAULT_SPEC).fetch(head["root"])
            book = OrderBook(DEFAULT_SPEC)
            for entry in journal.entries():
                book.apply(parse_command(entry.wire, DEFAULT_SPEC, seq=entry.seq, ts=entry.ts))
            assert version.book == book
            tg.cancel_scope.cancel()
