"""A repeat whose lookup read the journal just before the first one's commit landed
(and resumed after it settled) is still answered as a repeat: never appended twice,
which the journal refuses (``DuplicateEntry``) and the client would see as
``ERR_INTERNAL``. Modelled by a journal whose lookups always read too early."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed

from exchange.protocol import SUBMIT_ORDER, Entry
from exchange.sequencer import Journal, SubmitWorker
from orderbook_core import DEFAULT_SPEC
from transports import MemoryNetwork, open_transport

pytestmark = pytest.mark.anyio


class EarlyReads(Journal):
    """Every lookup finds nothing, as one that ran before the commit it races landed."""

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Entry | None]:
        return [None] * len(keys)


NEW = {"clientId": "alice", "orderId": "a1", "side": "buy", "price": "100", "amount": "5"}
MODIFY = {"op": "modify", "clientId": "alice", "orderId": "a1", "requestId": "m1", "price": "99"}


@pytest.mark.parametrize("payloads", [[NEW, NEW], [NEW, MODIFY, MODIFY]])
async def test_a_repeat_read_too_early_is_answered_from_the_commit(
    tmp_path: Path, payloads: list[dict[str, Any]]
) -> None:
    network = MemoryNetwork()
    with EarlyReads(tmp_path / "j.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, DEFAULT_SPEC, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            replies = [
                await client.request(SUBMIT_ORDER, signed(payload), timeout=10)
                for payload in payloads
            ]
            tg.cancel_scope.cancel()
        assert replies[-1] == replies[-2]  # the repeat's reply is the first one's
        assert journal.head() == len(payloads) - 1
