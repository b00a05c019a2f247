"""Three markets on real grapes: a sequencer and a matcher per market, as processes.

The workers are started as an operator would (`--market X`, no `--db`: each market's
default files, in one data directory), one client per side per market trades, and:
each market's replica equals its own `dex replay`; an order signed for one market and
sent to another's ``submit_order`` is refused and changes nothing there; `dex markets`
finds all three with their heads.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from support.grapes import running_grapes
from support.keys import named_key

from e2e.harness import PYTHON, REPO, ClientRun, Exchange, Proc, _env, start_proc
from exchange.protocol import DEFAULT_MARKET, market_names, sign_order
from transports import RemoteError
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MARKETS = (DEFAULT_MARKET, "ETH-USD", "SOL-USD")


def _flag(market: str) -> list[str]:
    return [] if market == DEFAULT_MARKET else ["--market", market]


class _Markets(Exchange):
    """Every market's workers, run from `workdir` (their default files in its data/)."""

    def spawn(self, name: str, argv: list[str]) -> Proc:
        self._count += 1
        log = self.workdir / f"{self._count:03d}-{name}.log"
        script = str(REPO / argv[0]) if argv[0].startswith("bin/") else argv[0]
        proc = start_proc(name, [script, *argv[1:]], log, cwd=self.workdir, env=_env(), python=True)
        self.procs.append(proc)
        return proc

    def dex(self, *words: str) -> Any:
        argv = [PYTHON, "-m", "exchange.tools", *words, "--json"]
        proc = subprocess.run(
            argv,
            cwd=self.workdir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def markets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Markets]:
    workdir = tmp_path_factory.mktemp("markets")
    with running_grapes(2) as grapes:
        exchange = _Markets([g.url for g in grapes], workdir)
        try:
            started = []
            for market in MARKETS:
                started.append(
                    exchange.spawn(
                        f"process-{market}",
                        [
                            "bin/processOrderWorker.py",
                            f"grape={exchange.grapes[1]}",
                            *_flag(market),
                        ],
                    )
                )
                started.append(
                    exchange.spawn(
                        f"submit-{market}",
                        ["bin/submitOrderWorker.py", f"grape={exchange.grapes[0]}", *_flag(market)],
                    )
                )
            for proc in started:
                proc.wait_for_text("worker ready", 60)
            yield exchange
        finally:
            exchange.close()


def test_each_market_trades_on_its_own_and_replays_to_its_own_book(markets: _Markets) -> None:
    data = markets.workdir / "data"
    for market in MARKETS[1:]:
        for name in ("submit_journal", "process_state"):
            assert (data / f"{name}-{market}.db").exists(), sorted(p.name for p in data.iterdir())
    assert (data / "submit_journal.db").exists()
    words = []
    for n, market in enumerate(MARKETS):
        where = [] if market == DEFAULT_MARKET else [f"market={market}"]
        amount = f"{n + 1}"
        words.append([f"clientId=maker{n}", "type=Sell", f"amount={amount}", "price=100", *where])
        words.append([f"clientId=taker{n}", "type=Buy", f"amount={amount}", "price=100", *where])
    procs = [markets.start_client(w, grape=i) for i, w in enumerate(words)]
    with ThreadPoolExecutor(max_workers=len(procs)) as pool:
        runs: list[ClientRun] = list(pool.map(markets.finish, procs))
    for n, market in enumerate(MARKETS):
        maker, taker = runs[2 * n], runs[2 * n + 1]
        for run in (maker, taker):
            assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
        # Whichever came second traded on arrival (the first may be done while resting).
        assert max(maker.filled(), taker.filled()) == (n + 1) * 1000
        replayed = markets.dex("replay", *_flag(market))
        assert replayed["seq"] == 2, (market, replayed)
        latest = max((maker, taker), key=lambda run: run.done["seq"])
        assert latest.done["book"] == replayed["book"]
        head = markets.dex("head", "-g", markets.grapes[0], *_flag(market))
        assert head["seq"] == 2
        assert head["book"] == replayed["book"]


def test_an_order_signed_for_one_market_is_refused_by_the_others(markets: _Markets) -> None:
    before = {m: markets.dex("replay", *_flag(m))["seq"] for m in MARKETS}
    key = named_key("mallory")
    order = {"clientId": "mallory", "orderId": "m1", "side": "buy", "price": "100", "amount": "1"}
    eth = sign_order(order, key, "ETH-USD")
    default = sign_order(order, key)  # dex-order/1: the default market's

    async def send() -> list[str]:
        refusals = []
        async with GrenacheTransport(grape=markets.grapes[0]) as transport:
            for market, payload in (("SOL-USD", eth), (DEFAULT_MARKET, eth), ("ETH-USD", default)):
                try:
                    name = market_names(market).submit_order
                    await transport.request(name, payload, timeout=10)
                except RemoteError as exc:
                    refusals.append(exc.message)
                else:
                    refusals.append(f"taken by {market}")
        return refusals

    refusals = anyio.run(send)
    assert len(refusals) == 3
    assert all(message.startswith("ERR_AUTH: market") for message in refusals), refusals
    assert {m: markets.dex("replay", *_flag(m))["seq"] for m in MARKETS} == before


def test_dex_markets_lists_every_market_with_its_head(markets: _Markets) -> None:
    found = markets.dex("markets", "-g", markets.grapes[1])
    assert found["problems"] == {}
    listed = {m["market"]: m for m in found["markets"]}
    assert sorted(listed) == sorted(MARKETS)
    for market in MARKETS:
        head = markets.dex("head", "-g", markets.grapes[1], *_flag(market))
        assert listed[market]["head"]["seq"] == head["seq"]
        assert listed[market]["spec"]["tickSize"] == "0.01"
    # The matcher's own files: `dex snapshot --market` reads that market's state.
    assert markets.dex("snapshot", "--market", "ETH-USD") == []
