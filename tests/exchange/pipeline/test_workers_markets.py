"""Several markets on one network: each its own sequencer, journal and matcher, found
by its own names; an order signed for one market is refused by every other."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest
from support.exchange_rig import replay, wait_until
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, client_key

from exchange.client import ClientNode
from exchange.matcher import ProcessWorker
from exchange.protocol import DEFAULT_MARKET, market_names, sign_order
from exchange.sequencer import Journal, SubmitWorker
from exchange.tools import main as dex_main
from exchange.tools._network import list_markets
from exchange.versions import book_hash
from orderbook_core import MarketSpec
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio

MARKETS = (DEFAULT_MARKET, "ETH-USD", "SOL-USD")
REPO = Path(__file__).resolve().parents[3]


@asynccontextmanager
async def markets_on(
    network: MemoryNetwork, tmp_path: Path
) -> AsyncIterator[dict[str, tuple[Journal, ProcessWorker]]]:
    """A sequencer and a matcher of each market, each on its own transport and files."""
    running: dict[str, tuple[Journal, ProcessWorker]] = {}
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        for market in MARKETS:
            spec = MarketSpec(market=market)
            journal = stack.enter_context(Journal(tmp_path / f"journal-{market}.db", spec))
            sequencer = await stack.enter_async_context(open_transport("memory", network=network))
            matcher = await stack.enter_async_context(open_transport("memory", network=network))
            worker = ProcessWorker(
                matcher,
                tmp_path / f"process-{market}.db",
                spec,
                sequencer_key=SEQUENCER_PUBLIC,
                signing_key=MATCHER_KEY,
            )
            await tg.start(worker.run)
            submit = SubmitWorker(sequencer, journal, spec, signing_key=SEQUENCER_KEY, seed=3)
            await tg.start(submit.run)
            running[market] = (journal, worker)
        try:
            yield running
        finally:
            tg.cancel_scope.cancel()


async def test_markets_trade_apart_and_refuse_each_others_orders(tmp_path: Path) -> None:
    network = MemoryNetwork()
    async with (
        markets_on(network, tmp_path) as running,
        open_transport("memory", network=network) as transport,
        anyio.create_task_group() as tg,
    ):
        nodes = {}
        for n, market in enumerate(MARKETS):
            node = ClientNode(
                transport if n == 0 else await _own(network, tg),
                "trader",
                MarketSpec(market=market),
                head_interval=0.05,
                matcher_key=MATCHER_KEY.public_key(),
            )
            await tg.start(node.run)
            nodes[market] = node
        for n, node in enumerate(nodes.values()):
            for i in range(n + 1):
                await node.submit(
                    {"orderId": f"b{i}", "side": "buy", "price": "100", "amount": "1"}
                )
            await node.submit({"orderId": "s", "side": "sell", "price": "100", "amount": "1"})
        for n, market in enumerate(MARKETS):
            journal, matcher = running[market]
            assert journal.head() == n + 2  # its own orders only
            await wait_until(partial(_at, matcher, n + 2), 10)
            book, _events = replay(journal, MarketSpec(market=market))
            assert book_hash(matcher.book) == book_hash(book)
            node = nodes[market]
            await wait_until(partial(_replica_at, node, n + 2), 10)

        # An order signed for ETH-USD, sent to the other markets' submit_order: refused.
        order = {"clientId": "mallory", "orderId": "x", "side": "buy", "price": "1", "amount": "1"}
        eth = sign_order(order, client_key("mallory"), "ETH-USD")
        old = sign_order(order, client_key("mallory"))  # dex-order/1: the default market's
        heads = {m: running[m][0].head() for m in MARKETS}
        for market, payload in (("SOL-USD", eth), (DEFAULT_MARKET, eth), ("SOL-USD", old)):
            with pytest.raises(RemoteError, match=r"^ERR_AUTH: market"):
                await transport.request(market_names(market).submit_order, payload, timeout=5)
        assert {m: running[m][0].head() for m in MARKETS} == heads

        # Every matcher answers `markets`; a map finds them all.
        found = await list_markets(transport, 5)
        assert found.problems == {}
        assert [info.market for _peer, info in found.markets] == sorted(MARKETS)
        assert {info.market: info.head.seq for _peer, info in found.markets} == {
            m: n + 2 for n, m in enumerate(MARKETS)
        }
        tg.cancel_scope.cancel()


def _at(matcher: ProcessWorker, seq: int) -> bool:
    return matcher.head_seq == seq


def _replica_at(node: ClientNode, seq: int) -> bool:
    return node.replica.seq == seq


async def _own(network: MemoryNetwork, tg: anyio.abc.TaskGroup) -> Transport:
    """A transport of its own for a client node (one serves one orderbook_updated)."""
    ready: list[Transport] = []
    started = anyio.Event()

    async def hold() -> None:
        async with open_transport("memory", network=network) as transport:
            ready.append(transport)
            started.set()
            await anyio.sleep_forever()

    tg.start_soon(hold)
    await started.wait()
    return ready[0]


def test_a_worker_refuses_a_market_that_is_not_a_symbol() -> None:
    for script in ("bin/submitOrderWorker.py", "bin/processOrderWorker.py"):
        done = subprocess.run(
            [sys.executable, script, "--market", "eth-usd"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "--market: market 'eth-usd': must be 1 to 20 upper-case" in done.stderr


def test_dex_reads_a_markets_own_journal_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert dex_main(["replay", "--market", "ETH-USD"]) == 2
    assert "submit_journal-ETH-USD.db" in capsys.readouterr().err
    assert dex_main(["replay"]) == 2
    err = capsys.readouterr().err
    assert "submit_journal.db" in err
    assert "ETH" not in err
