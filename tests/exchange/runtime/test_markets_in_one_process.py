"""Several markets in one worker process (issue 19): the arguments each market gets, and
a market that fails alone.

The program is `run_worker_program` with a stand-in role whose markets' runners are
scripted: one market's "journal" raises while the other keeps serving, as a worker of
its own would. No grape is needed: a runner never uses its transport.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from support.keys import SEQUENCER_KEY, named_key

import exchange.runtime._program as program
import exchange.sequencer._program as sequencer
from exchange.protocol import DEFAULT_MARKET, market_names, sign_order
from exchange.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    NO_METRICS,
    Runner,
    WorkerProgram,
    run_worker_program,
)
from exchange.runtime._program import _market_args, _parse_args
from exchange.sequencer import JournalConflict
from exchange.sequencer._open import open_journal
from transports import MemoryNetwork, MemoryTransport, NoPeersError, RemoteError, Transport


class Stuck(Exception):
    """A role's own stop (as the matcher's GaveUp)."""


class Script:
    """What each market's runner does, and what it did: `behaviour[market]` is awaited
    after `task_status.started`, and the built markets' arguments are kept."""

    def __init__(self, behaviour: dict[str, Callable[[], Any]]) -> None:
        self.behaviour = behaviour
        self.built: dict[str, argparse.Namespace] = {}
        self.closed: list[str] = []
        self.ticks: dict[str, int] = dict.fromkeys(behaviour, 0)

    def build(self, args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
        market = args.market
        self.built[market] = args
        stack.callback(self.closed.append, market)  # its files, closed when it stops

        async def run(*, task_status: TaskStatus[int]) -> None:
            task_status.started(args.port or 1000 + len(self.built))
            await self.behaviour[market]()

        return lambda _transport: run

    def program(self) -> WorkerProgram:
        return WorkerProgram(
            name="test_order",
            role="sequencer",
            prog="test",
            description="a stand-in",
            default_grape="http://127.0.0.1:1",
            default_db="data/test.db",
            db_help="db",
            port_help="port",
            build=self.build,
            key_name="tester",
            stops=((Stuck, 7),),
        )


def run(script: Script, tmp_path: Path, *argv: str) -> int:
    words = ["grape=http://127.0.0.1:1", "--db", str(tmp_path / "x.db"), *argv]
    return run_worker_program(script.program(), words)


def test_several_markets_each_get_their_own_files_port_and_key(tmp_path: Path) -> None:
    program = Script({}).program()
    args = _parse_args(program, ["market=AAA,BB-USD", "--market", "CCC", "--port", "7000"])
    assert args.markets == ["AAA", "BB-USD", "CCC"]
    each = [_market_args(program, args, n) for n in range(3)]
    assert [one.db for one in each] == [f"data/test-{m}.db" for m in ("AAA", "BB-USD", "CCC")]
    assert [one.key_file for one in each] == [f"data/tester-{m}.key" for m in args.markets]
    assert [one.port for one in each] == [7000, 7001, 7002]
    assert all(one.several for one in each)
    # An explicit --db (and --key-file) with several markets: each market's name put in.
    args = _parse_args(program, ["--market", DEFAULT_MARKET, "--market", "ETH-USD", "--db",
                                 "/d/j.db", "--key-file", "/k/s.key"])  # fmt: skip
    each = [_market_args(program, args, n) for n in range(2)]
    assert [(one.db, one.key_file, one.port) for one in each] == [
        ("/d/j.db", "/k/s.key", 0),  # the default market's: the path itself
        ("/d/j-ETH-USD.db", "/k/s-ETH-USD.key", 0),
    ]


def test_one_market_is_as_before(tmp_path: Path) -> None:
    program = Script({}).program()
    for argv, market, db in (
        ([], DEFAULT_MARKET, "data/test.db"),
        (["--market", "ETH-USD"], "ETH-USD", "data/test-ETH-USD.db"),
        (["market=ETH-USD", "--db", "/d/j.db", "--port", "9"], "ETH-USD", "/d/j.db"),
    ):
        args = _parse_args(program, argv)
        one = _market_args(program, args, 0)
        assert (one.market, one.db, one.several) == (market, db, False)
        assert one.port == args.port
        assert one.key_file == str(Path(db).parent / ("tester.key" if market == DEFAULT_MARKET
                                                      else f"tester-{market}.key"))  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["--market", "ETH-USD", "market=ETH-USD"],
        ["market=ETH-USD,eth"],
        ["--market", "A", "--market", "B", "--port", "65535"],
    ],
    ids=["twice", "not-a-symbol", "ports"],
)
def test_bad_markets_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        _parse_args(Script({}).program(), argv)
    assert stopped.value.code == EXIT_USAGE


def test_a_failing_market_stops_alone_while_the_other_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A's journal raises; B goes on (its task ticks after A's end, its files open);
    then SIGTERM stops B, and the status is A's failure."""
    script: Script

    async def journal_raises() -> None:
        script.ticks["AAA"] += 1
        await anyio.sleep(0.05)
        raise sqlite3.OperationalError("disk I/O error")

    async def serves() -> None:
        while True:
            script.ticks["BBB"] += 1
            if "AAA" in script.closed and not after_a:
                after_a.append(script.ticks["BBB"])
            if after_a and script.ticks["BBB"] > 20 + after_a[0]:
                # well after A stopped, B is still serving, its files open: stop the process
                assert "BBB" not in script.closed
                os.kill(os.getpid(), signal.SIGTERM)
                await anyio.sleep(10)
            await anyio.sleep(0.01)

    after_a: list[int] = []
    script = Script({"AAA": journal_raises, "BBB": serves})
    with caplog.at_level(logging.INFO):
        status = run(script, tmp_path, "--market", "AAA", "--market", "BBB")
    assert status == EXIT_FAILED
    assert script.closed == ["AAA", "BBB"]
    assert script.ticks["BBB"] > 20 + after_a[0]
    assert "market AAA stopped: disk I/O error" in caplog.text
    assert "SIGTERM: stopping" in caplog.text
    assert "every market stopped" not in caplog.text


def test_when_every_market_stopped_the_process_exits_with_the_first_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def stuck() -> None:
        await anyio.sleep(0.01)
        raise Stuck("gave up")

    async def later() -> None:
        await anyio.sleep(0.2)
        raise RuntimeError("a bug")

    script = Script({"AAA": later, "BBB": stuck})
    with caplog.at_level(logging.INFO):
        status = run(script, tmp_path, "market=AAA,BBB")
    assert status == 7  # the role's status for its own stop: B's, the first to fail
    assert script.closed == ["BBB", "AAA"]
    assert "market BBB stopped: gave up" in caplog.text
    assert "market AAA stopped: a bug" in caplog.text  # with its traceback
    assert "Traceback" in caplog.text
    assert "every market stopped" in caplog.text


def test_a_signal_with_no_failure_exits_0(tmp_path: Path) -> None:
    async def serves() -> None:
        await anyio.sleep_forever()

    script = Script({"AAA": serves, "BBB": serves})
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        assert run(script, tmp_path, "market=AAA,BBB") == EXIT_OK
    finally:
        timer.cancel()
    assert sorted(script.closed) == ["AAA", "BBB"]
    assert {m: a.port for m, a in script.built.items()} == {"AAA": 0, "BBB": 0}


def test_the_roles_put_each_markets_name_in_their_own_paths(tmp_path: Path) -> None:
    from exchange.matcher import main as matcher_main
    from exchange.sequencer._program import _PROGRAM as SEQUENCER
    from exchange.sequencer._program import _build

    argv = ["market=AAA,BBB", "--journal", f"sqlite:{tmp_path / 'j.db'}", "--db", "x.db"]
    args = _parse_args(SEQUENCER, argv)
    for n, market in enumerate(args.markets):
        one = _market_args(SEQUENCER, args, n)
        one.metrics, one.key = None, None
        with ExitStack() as files:
            _build(one, files)
            assert (tmp_path / f"j-{market}.db").exists()
    # One hex key cannot be every market's sequencer key: refused, before serving.
    argv = ["grape=http://127.0.0.1:1", "market=AAA,BBB", "--db", str(tmp_path / "p.db")]
    assert matcher_main([*argv, "--sequencer-key", "ab" * 32]) == EXIT_USAGE


@pytest.mark.anyio
async def test_real_sequencers_one_journal_stuck_then_raising_the_other_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two real sequencers in one process on the memory network: AAA's journal blocks
    in its commit, then raises (another writer appended: it steps down and stops);
    meanwhile and after, BBB takes orders at once."""
    network = MemoryNetwork()
    monkeypatch.setattr(program, "open_transport", lambda _kind, **_: MemoryTransport(network))
    journals: dict[str, Any] = {}
    real_open = open_journal

    def opening(location: str, spec: Any) -> Any:
        journals[spec.market] = real_open(location, spec)
        return journals[spec.market]

    monkeypatch.setattr(sequencer, "open_journal", opening)
    args = _parse_args(sequencer._PROGRAM, ["market=AAA,BBB", "--db", str(tmp_path / "j.db")])
    markets: list[program._Market] = []
    failed: list[int] = []
    gate = threading.Event()

    def stuck_then_raising(*_args: Any) -> None:
        gate.wait(20)
        raise JournalConflict("another writer appended")

    def order(market: str, n: int) -> Any:
        payload = {"clientId": "c", "orderId": f"o{n}", "side": "buy", "price": "1",
                   "amount": "1"}  # fmt: skip
        return sign_order(payload, named_key("c"), market)

    async def submit(client: MemoryTransport, market: str, n: int) -> Any:
        return await client.request(market_names(market).submit_order, order(market, n))

    with ExitStack() as stack:
        for n in range(2):
            one = _market_args(sequencer._PROGRAM, args, n)
            one.metrics, one.key = NO_METRICS, SEQUENCER_KEY
            files = stack.enter_context(ExitStack())
            markets.append(program._Market(one, sequencer._build(one, files), files))
        monkeypatch.setattr(journals["AAA"], "append", stuck_then_raising)
        async with anyio.create_task_group() as tg, MemoryTransport(network) as client:
            tg.start_soon(program._serve_markets, sequencer._PROGRAM, markets, failed)
            with anyio.fail_after(10):
                while True:
                    try:
                        assert (await submit(client, "BBB", 1))["seq"] == 1
                        break
                    except NoPeersError:
                        await anyio.sleep(0.01)
            blocked = anyio.Event()

            async def into_the_stuck_journal() -> None:
                blocked.set()
                with pytest.raises(RemoteError, match="ERR_UNAVAILABLE"):
                    await submit(client, "AAA", 1)

            tg.start_soon(into_the_stuck_journal)
            await blocked.wait()
            await anyio.sleep(0.1)  # AAA's commit is in its journal's hands
            with anyio.fail_after(2):  # not held by AAA's stuck commit
                assert (await submit(client, "BBB", 2))["seq"] == 2
            gate.set()
            with anyio.fail_after(10):
                while not failed:  # noqa: ASYNC110  (a list the runner appends to)
                    await anyio.sleep(0.01)
            assert failed == [EXIT_FAILED]  # AAA: stopped (SteppedDown), alone
            with anyio.fail_after(2):
                assert (await submit(client, "BBB", 3))["seq"] == 3
            tg.cancel_scope.cancel()
    assert "market AAA stopped: another writer appended" in caplog.text
    assert "market BBB stopped" not in caplog.text


@pytest.mark.parametrize("role", ["sequencer", "matcher", "client"])
def test_one_page_serves_every_markets_series_apart(role: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from exchange.runtime import NullMetrics
    from exchange.runtime._prometheus import metrics_for

    registry = CollectorRegistry()
    aaa = metrics_for(role, registry, "AAA")
    bbb = aaa.for_market("BBB")
    assert aaa.for_market("AAA") is aaa
    assert bbb.for_market("BBB") is bbb
    assert aaa.for_market("BBB") is bbb
    aaa.committed(5, 5, 0.001)
    aaa.version_published(5, 5, 0.01)
    bbb.journal_head(9, 2)
    bbb.matcher_head(9)
    aaa.refused("x", "ERR_AUTH")
    aaa.follow_replica(lambda: (3, 5))
    bbb.follow_replica(lambda: (7, 7))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples, "an empty page"
    assert all(dict(labels).get("market") in ("AAA", "BBB") for _, labels in samples)
    expected = {
        "sequencer": [("dex_journal_head", "AAA", 5), ("dex_journal_head", "BBB", 9),
                      ("dex_backlog", "BBB", 7), ("dex_commands_accepted_total", "BBB", 0)],
        "matcher": [("dex_matcher_head", "AAA", 5), ("dex_matcher_head", "BBB", 9),
                    ("dex_commands_applied_total", "BBB", 0)],
        "client": [("dex_replica_lag", "AAA", 2), ("dex_replica_lag", "BBB", 0),
                   ("dex_replica_seq", "BBB", 7)],
    }[role]  # fmt: skip
    for name, market, value in expected:
        assert samples[(name, (("market", market),))] == value
    if role != "client":
        key = ("dex_requests_refused_total", (("code", "ERR_AUTH"), ("market", "AAA"),
                                              ("service", "x")))  # fmt: skip
        assert samples[key] == 1
    null = NullMetrics()
    assert null.for_market("AAA") is null
