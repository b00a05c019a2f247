"""`bin/client market=ETH-USD --live` shows that market (issue 19), terminal or not.

An ETH-USD pair of workers on the memory transport, beside a BTC-USD pair whose book
holds other orders: the live view of the ETH-USD client names ETH-USD and shows its
book only.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from rich.console import Console
from support.keys import MATCHER_KEY, SEQUENCER_KEY

from exchange.client import ClientArgs, parse_client_args, run_client
from exchange.matcher import ProcessWorker
from exchange.protocol import ArgumentError
from exchange.runtime import EXIT_OK
from exchange.sequencer import Journal, SubmitWorker
from orderbook_core import DEFAULT_SPEC, MarketSpec
from transports import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio

ETH = MarketSpec(market="ETH-USD")


@asynccontextmanager
async def two_markets(tmp_path: Path) -> AsyncIterator[MemoryNetwork]:
    network = MemoryNetwork(seed=5)
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        for spec in (DEFAULT_SPEC, ETH):
            where = tmp_path / spec.market
            where.mkdir()
            journal = stack.enter_context(Journal(where / "journal.sqlite", spec))
            process_t = await stack.enter_async_context(MemoryTransport(network))
            submit_t = await stack.enter_async_context(MemoryTransport(network))
            matcher = ProcessWorker(
                process_t,
                where / "process.sqlite",
                spec,
                sequencer_key=SEQUENCER_KEY.public_key(),
                signing_key=MATCHER_KEY,
            )
            await tg.start(matcher.run)
            await tg.start(SubmitWorker(submit_t, journal, spec, signing_key=SEQUENCER_KEY).run)
        yield network
        tg.cancel_scope.cancel()


async def run(network: MemoryNetwork, args: ClientArgs, console: Console | None = None) -> int:
    async with MemoryTransport(network) as transport:
        return await run_client(args, transport, io.StringIO(), head_interval=0.05, console=console)


async def test_the_live_view_of_another_market_shows_that_market(tmp_path: Path) -> None:
    async with two_markets(tmp_path) as network:
        btc = ["clientId=alice", "type=Sell", "amount=2", "price=777", "--once", "--json"]
        assert await run(network, parse_client_args(btc)) == EXIT_OK
        eth = ["type=Sell", "amount=1", "price=2500", "market=ETH-USD", "--once", "--json"]
        assert await run(network, parse_client_args(["clientId=carol", *eth])) == EXIT_OK
        args = parse_client_args(["clientId=bob", "market=ETH-USD", "--live", "--once"])
        assert args.live
        console = Console(file=io.StringIO(), width=100, height=30, record=True)
        assert await run(network, args, console) == EXIT_OK  # not a terminal: --live
    screen = console.export_text()
    assert "ETH-USD  bob  v1" in screen, screen
    assert "2500.00" in screen
    assert "777" not in screen  # the other market's book
    assert "BTC-USD" not in screen


@pytest.mark.parametrize("other", ["--json", "--plain"])
def test_live_is_refused_with_json_or_plain(other: str) -> None:
    with pytest.raises(ArgumentError, match="--live"):
        parse_client_args(["market=ETH-USD", "--live", other])
