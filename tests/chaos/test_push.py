"""Push alone keeps a replica current, past a dead and a slow subscriber, on real grapes.

Clients poll ``orderbook_head`` as well as listening, so a broken ``orderbook_updated``
push would go unnoticed. Here a client node on real grapes asks the head once, at
start, and never polls again (``long_poll_ms=0`` with an hour between plain polls): only
a pushed root makes it ask again (to raise its bound to the pushed version, as
`ClientNode` does for any root beyond the head it knows). It must still reach the
journal's head, with the book of the oracle (`orderbook_core.testing.ReferenceBook`),
while the matcher's ``map`` also goes to a subscriber killed with SIGKILL (still
announced: grapes keep dead peers) and to one that never answers in time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest
from e2e.harness import Proc
from support.grapes import grape_call

from chaos.harness import (
    Load,
    Outcome,
    Plan,
    Rig,
    records,
    reference_books,
    running_rig,
    submit_until_acked,
    until,
)
from exchange.client import ClientNode
from exchange.protocol import ORDERBOOK_UPDATED, Head
from exchange.sequencer import Journal
from transports import JSON, open_transport

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

ORDERS = 24


class PushOnlyNode(ClientNode):
    """A client node that counts the pushes it gets and the heads it asks for."""

    pushes = 0
    head_requests = 0

    async def on_updated(self, payload: JSON) -> JSON:
        self.pushes += 1
        return await super().on_updated(payload)

    async def fetch_head(self, *, wait_ms: int = 0) -> Head:
        self.head_requests += 1
        return await super().fetch_head(wait_ms=wait_ms)


async def _slow(payload: JSON) -> JSON:
    """A subscriber that answers long after the matcher's broadcast timeout (2 s)."""
    await anyio.sleep(30)
    return None


def _started(proc: Proc) -> bool:
    return any(r.get("event") == "started" for r in records(proc))


def _subscribers(rig: Rig) -> int:
    found = grape_call(rig.grapes[0].url, "lookup", ORDERBOOK_UPDATED)
    return len(found) if isinstance(found, list) else 0


async def _scenario(rig: Rig) -> None:
    await rig.start_worker("process", None)
    await rig.start_worker("submit", None)
    # A subscriber that dies: announced, then SIGKILL (it stays announced for ever).
    dead = rig.spawn("dead", ["bin/client.py", "clientId=dead", f"grape={rig.grapes[1].url}",
                              "--json"])  # fmt: skip
    with anyio.fail_after(60):
        await until(lambda: _started(dead) and _subscribers(rig) >= 1)
    dead.kill9()
    outcome = Outcome(seed=0)
    load = Load(Plan(seed=0, orders=ORDERS, kills=()), outcome)
    async with (
        open_transport("grenache", grape=rig.grapes[1].url) as slow_transport,
        open_transport("grenache", grape=rig.grapes[0].url) as transport,
        anyio.create_task_group() as tg,
    ):
        await tg.start(slow_transport.serve, {ORDERBOOK_UPDATED: _slow})
        node = PushOnlyNode(transport, "pushonly", long_poll_ms=0, head_interval=3600)
        await tg.start(node.run)
        with anyio.fail_after(60):  # the dead, the slow and this node: all announced
            await until(lambda: _subscribers(rig) >= 3)
        last = 0
        for _ in range(ORDERS):
            order = load.next_order()
            await submit_until_acked(transport, order["key"], order["payload"], outcome)
            last = max(last, outcome.acks[order["key"]].seq)
            await anyio.sleep(0.05)  # several versions, several broadcasts
        with anyio.fail_after(60):
            await node.wait_for_seq(last)
        assert node.pushes >= 1
        # Every head asked for after the first was asked because a root was pushed.
        assert node.head_requests <= 1 + node.pushes, (node.head_requests, node.pushes)
        assert node.replica.seq == last
        with Journal(rig.journal) as journal:
            entries = [(e.seq, e.ts, dict(e.wire)) for e in journal.entries()]
        oracle = reference_books(entries, {last}, Counter())
        assert node.book_hash == oracle[last]
        tg.cancel_scope.cancel()
    matcher_log = rig.workers["process"].text()
    assert "orderbook_updated: " in matcher_log  # the dead or the slow one was reported
    assert rig.workers["process"].alive()
    assert rig.workers["submit"].alive()


def test_push_alone_reaches_a_live_replica_past_dead_and_slow_subscribers(
    tmp_path: Path,
) -> None:
    with running_rig(tmp_path) as rig:
        anyio.run(_scenario, rig)
