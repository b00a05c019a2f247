"""Several markets in one process, and one market's outage leaves the others trading.

Three markets on real grapes: ONE sequencer process serves all three (`--market`
repeated), the matchers run as two processes: ETH-USD alone, SOL-USD and ADA-USD
together (``market=SOL-USD,ADA-USD``). ETH-USD's matcher is stopped (SIGSTOP): the
sequencer still takes ETH-USD's orders (journaled, not applied), while clients trade
in the two other markets through the same sequencer process, their replicas equal
their own `dex replay`, and the one metrics page shows each market's backlog apart.
After SIGCONT, ETH-USD catches up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.grapes import running_grapes
from support.keys import named_key
from support.ports import free_port

from e2e.harness import PYTHON, REPO, ClientRun, Exchange, Proc, _env, start_proc
from exchange.protocol import market_names, sign_order
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STOPPED, TRADING = "ETH-USD", ("SOL-USD", "ADA-USD")


class _Markets(Exchange):
    """The workers, run from `workdir` (their default files in its data/)."""

    def spawn(self, name: str, argv: list[str]) -> Proc:
        self._count += 1
        log = self.workdir / f"{self._count:03d}-{name}.log"
        argv = [str(REPO / argv[0]), *argv[1:]]
        proc = start_proc(name, argv, log, cwd=self.workdir, env=_env(), python=True)
        self.procs.append(proc)
        return proc

    def dex(self, *words: str) -> Any:
        argv = [PYTHON, "-m", "exchange.tools", *words, "--json"]
        proc = subprocess.run(
            argv, cwd=self.workdir, env=_env(), capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


def _wait_for_count(proc: Proc, needle: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proc.text().count(needle) < count:
        assert proc.alive(), proc.text()
        assert time.monotonic() < deadline, proc.text()
        time.sleep(0.05)


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """The `dex_*` samples without labels but `market`, by (name, market)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, s.labels["market"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("dex_") and set(s.labels) == {"market"}
    }


@pytest.fixture(scope="module")
def markets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Markets, int]]:
    workdir = tmp_path_factory.mktemp("isolation")
    metrics_port = free_port()
    with running_grapes(2) as grapes:
        exchange = _Markets([g.url for g in grapes], workdir)
        try:
            g0, g1 = exchange.grapes
            alone = exchange.spawn(
                "process-eth", ["bin/processOrderWorker.py", f"grape={g1}", "--market", STOPPED]
            )
            pair = exchange.spawn(
                "process-sol-ada",
                ["bin/processOrderWorker.py", f"grape={g1}", f"market={','.join(TRADING)}"],
            )
            every = ["--market", STOPPED, "--market", TRADING[0], "--market", TRADING[1]]
            submit = exchange.spawn(
                "submit-all",
                ["bin/submitOrderWorker.py", f"grape={g0}", *every,
                 "--metrics-port", str(metrics_port)],
            )  # fmt: skip
            alone.wait_for_text("process_order worker ready", 60)
            _wait_for_count(pair, "process_order worker ready", 2, 60)
            _wait_for_count(submit, "submit_order worker ready", 3, 60)
            yield exchange, metrics_port
        finally:
            exchange.close()


def _order(market: str, client: str, n: int) -> dict[str, Any]:
    order = {"clientId": client, "orderId": f"o{n}", "side": "buy", "price": "100", "amount": "1"}
    return sign_order(order, named_key(client), market)


def test_a_stopped_market_does_not_delay_the_others(markets: tuple[_Markets, int]) -> None:
    exchange, metrics_port = markets
    data = exchange.workdir / "data"
    for market in (STOPPED, *TRADING):  # each market its own files, as if alone
        for name in ("submit_journal", "process_state", "sequencer", "matcher"):
            suffix = ".key" if name in ("sequencer", "matcher") else ".db"
            assert (data / f"{name}-{market}{suffix}").exists(), sorted(data.iterdir())
    (matcher,) = [p for p in exchange.procs if p.name == "process-eth"]
    os.kill(matcher.pid, signal.SIGSTOP)
    try:

        async def submit_stopped() -> list[int]:
            async with GrenacheTransport(grape=exchange.grapes[0]) as transport:
                name = market_names(STOPPED).submit_order
                return [
                    (await transport.request(name, _order(STOPPED, "erin", n), timeout=10))["seq"]
                    for n in (1, 2)
                ]

        # Its sequencer still takes its orders: journaled, not applied (its forwarder
        # waits on a matcher that does not answer).
        assert anyio.run(submit_stopped) == [1, 2]
        started = time.monotonic()
        words = []
        for n, market in enumerate(TRADING):
            amount = str(n + 1)
            words.append([f"clientId=maker{n}", "type=Sell", f"amount={amount}", "price=100"])
            words.append([f"clientId=taker{n}", "type=Buy", f"amount={amount}", "price=100"])
            for w in words[-2:]:
                w.append(f"market={market}")
        procs = [exchange.start_client(w, grape=i, timeout=30) for i, w in enumerate(words)]
        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            runs: list[ClientRun] = list(pool.map(exchange.finish, procs))
        took = time.monotonic() - started
        for n, market in enumerate(TRADING):
            maker, taker = runs[2 * n], runs[2 * n + 1]
            for run in (maker, taker):
                assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
            assert max(maker.filled(), taker.filled()) == (n + 1) * 1000
            replayed = exchange.dex("replay", "--market", market)
            assert replayed["seq"] == 2, (market, replayed)
            latest = max((maker, taker), key=lambda run: run.done["seq"])
            assert latest.done["book"] == replayed["book"]
            head = exchange.dex("head", "-g", exchange.grapes[1], "--market", market)
            assert (head["seq"], head["book"]) == (2, replayed["book"])
        # One page, each market's own series: the stopped one's backlog only.
        samples = _scrape(metrics_port)
        assert samples[("dex_journal_head", STOPPED)] == 2
        assert samples[("dex_backlog", STOPPED)] == 2
        for market in TRADING:
            assert samples[("dex_journal_head", market)] == 2
            assert samples[("dex_backlog", market)] == 0
            assert samples[("dex_commands_accepted_total", market)] == 2
        assert exchange.dex("replay", "--market", STOPPED)["seq"] == 2
        print(f"two markets traded in {took:.1f} s while {STOPPED}'s matcher was stopped")
    finally:
        os.kill(matcher.pid, signal.SIGCONT)
    # Back: the stopped market catches up, nothing lost.
    deadline = time.monotonic() + 30
    while _scrape(metrics_port)[("dex_backlog", STOPPED)] != 0:
        assert time.monotonic() < deadline, _scrape(metrics_port)
        time.sleep(0.2)
    replayed = exchange.dex("replay", "--market", STOPPED)
    head = exchange.dex("head", "-g", exchange.grapes[1], "--market", STOPPED)
    assert (head["seq"], head["book"]) == (2, replayed["book"])
