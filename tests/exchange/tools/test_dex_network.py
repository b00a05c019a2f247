"""The challenge's three commands, verbatim, and every network `dex` command, on real grapes.

The module starts two private grapes (the challenge's command) and both workers through
the launchers `bin/processOrderWorker` and `bin/submitOrderWorker`, from a working
directory outside the repository, then runs `bin/client` the same way. The `dex`
commands are then run in-process (`exchange.tools.main`) against that exchange.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.grapes import running_grapes
from support.ports import free_port

from exchange.tools import main

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Running:
    grapes: list[str]
    journal: Path
    workdir: Path
    clients: list[subprocess.CompletedProcess[str]]


def _wait_for(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def _client(workdir: Path, grape: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "bin" / "client"), *words, f"grape={grape}", "--once", "--timeout=30"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("runbook")  # not the repository: launchers find it
    procs: list[subprocess.Popen[bytes]] = []
    with running_grapes(2) as grapes:
        try:
            for script, grape, needle in (
                ("processOrderWorker", grapes[1].url, "process_order worker ready"),
                ("submitOrderWorker", grapes[0].url, "submit_order worker ready"),
            ):
                log = workdir / f"{script}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        [str(REPO / "bin" / script), f"grape={grape}"],
                        cwd=workdir,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                procs.append(proc)
                _wait_for(log, needle, proc, 30)
            url = grapes[0].url
            clients = [
                # The challenge's line, as written (plus where the grapes are).
                _client(workdir, url, "clientId=client1", "type=Buy", "amount=10", "price=100"),
                _client(workdir, url, "clientId=client2", "type=Sell", "amount=4", "price=100"),
                _client(workdir, url, "clientId=client2", "type=Sell", "amount=1", "price=101.5"),
                _client(workdir, url, "clientId=client3", "op=cancel", "orderId=nope"),
            ]
            yield Running([g.url for g in grapes], workdir / "data" / "submit_journal.db",
                          workdir, clients)  # fmt: skip
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()


def dex(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_challenges_commands_run_from_another_directory(exchange: Running) -> None:
    buy, sell, rest, cancel = exchange.clients
    for run in (buy, sell, rest):
        assert run.returncode == 0, run.stderr
    assert "order client1-" in buy.stdout
    assert "10.000 resting at 100.00" in buy.stdout
    assert "filled 4.000" in sell.stdout
    assert "(taker, against client1)" in sell.stdout
    assert cancel.returncode == 4, cancel.stdout + cancel.stderr
    assert "cancel of nope failed" in cancel.stdout
    # The workers' data went where they were started, as the docs say.
    assert exchange.journal.is_file()


def test_head(exchange: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "head", "-g", exchange.grapes[1])
    assert status == 0
    assert out.splitlines()[0] == "seq 4"
    status, out, _ = dex(capsys, "head", "--grape", exchange.grapes[0], "--json")
    head = json.loads(out)
    assert head["seq"] == 4
    assert len(head["root"]) == 40


def test_book(exchange: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "book", "-g", exchange.grapes[0])
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("seq 4  root ")
    assert "(2 orders resting, verified)" in lines[1]
    assert any(line.split()[:3] == ["ask", "101.50", "1.000"] for line in lines)
    assert any(line.split()[:3] == ["bid", "100.00", "6.000"] for line in lines)
    assert "---- spread 1.50 (148.9 bps) ----" in out
    status, out, _ = dex(capsys, "book", "-g", exchange.grapes[1], "--json", "--depth", "1")
    book = json.loads(out)
    assert book["bids"] == [{"price": "100.00", "amount": "6.000", "orders": 1}]
    assert book["asks"] == [{"price": "101.50", "amount": "1.000", "orders": 1}]
    assert (book["seq"], book["orders"], book["spread"]) == (4, 2, "1.50")


def test_book_of_an_older_version_and_bad_roots(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = dex(capsys, "get", "-g", exchange.grapes[0], _head_root(exchange, capsys))
    prev = json.loads(out)["prev"]
    status, out, _ = dex(capsys, "book", "-g", exchange.grapes[0], "--root", prev, "--json")
    assert status == 0
    assert json.loads(out)["seq"] == 3
    assert dex(capsys, "book", "--root", "xyz")[0] == 2
    status, _, err = dex(capsys, "book", "-g", exchange.grapes[0], "--root", "0" * 40)
    assert status == 1
    assert "does not verify" in err


def _head_root(exchange: Running, capsys: pytest.CaptureFixture[str]) -> str:
    _, out, _ = dex(capsys, "head", "-g", exchange.grapes[0], "--json")
    root: str = json.loads(out)["root"]
    return root


def test_status(exchange: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "status", "-g", exchange.grapes[0], "--db", str(exchange.journal))
    assert status == 0, out
    assert "submit_order       1 answering" in out
    assert "process_order      1 answering" in out
    assert "matcher head   seq 4" in out
    assert " (verified)\n" in out  # the head's signature, by the key it names
    assert "journal head   seq 4" in out
    assert "backlog        0 journaled" in out
    status, out, _ = dex(
        capsys, "status", "-g", exchange.grapes[1], "--db", str(exchange.journal), "--json"
    )
    report = json.loads(out)
    assert report["matcherHead"]["seq"] == 4
    assert (report["matcherHeadVerified"], report["matcherHeadProblem"]) == (True, None)
    assert report["journal"]["head"] == 4
    assert report["backlog"] == 0
    assert report["journal"]["ordersPerSecond"] == pytest.approx(4 / 60, abs=0.01)
    names = {s["name"]: s for s in report["services"]}
    assert len(names["submit_order"]["answering"]) == 1
    # The clients ran with --once: they follow the head by long polls and announce
    # nothing, so no dead client stays announced (issue 16).
    assert names["orderbook_updated"]["announced"] == []


def test_status_without_a_journal_here(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = dex(capsys, "status", "-g", exchange.grapes[0], "--db", "/nonexistent.db")
    assert status == 0
    assert "journal        no journal at /nonexistent.db" in out


def test_lookup_request_get(exchange: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "lookup", "-g", exchange.grapes[1], "submit_order")
    assert status == 0
    assert out.strip().startswith("127.0.0.1:")
    status, out, err = dex(capsys, "lookup", "-g", exchange.grapes[1], "no_such_service")
    assert (status, out) == (1, "")
    assert "nobody is announced as 'no_such_service'" in err
    status, out, _ = dex(capsys, "request", "-g", exchange.grapes[0], "orderbook_head", "null")
    assert status == 0
    assert json.loads(out)["seq"] == 4
    status, _, err = dex(capsys, "request", "-g", exchange.grapes[0], "submit_order", "{}")
    assert status == 1
    assert "the peer answered with an error: ERR_" in err
    assert dex(capsys, "request", "orderbook_head", "{nope")[0] == 2
    status, out, _ = dex(capsys, "get", "-g", exchange.grapes[1], _head_root(exchange, capsys))
    assert status == 0
    assert json.loads(out)["format"] == "dex-book/3"
    status, _, err = dex(capsys, "get", "-g", exchange.grapes[1], "1" * 40)
    assert status == 1
    assert "not in the DHT" in err


def test_watch_once(exchange: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "watch", "-g", exchange.grapes[1], "--once", "--json")
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records[0]["clientId"].startswith("dex-watch-")
    assert records[-1]["event"] == "done"
    assert records[-1]["seq"] == 4
    status, out, _ = dex(capsys, "watch", "-g", exchange.grapes[1], "--once")
    assert status == 0
    assert "trade 2.1: 4.000 @ 100.00 (sell taker)" in out


def test_journal_and_replay_of_the_running_exchange(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = dex(capsys, "journal", "--db", str(exchange.journal), "--client", "client2")
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["2", "3"]
    status, out, _ = dex(capsys, "replay", "--db", str(exchange.journal), "--json")
    replay = json.loads(out)
    _, book, _ = dex(capsys, "book", "-g", exchange.grapes[0], "--json")
    assert replay["book"] == json.loads(book)["book"]
    assert replay["lastTrades"] == [
        {
            "seq": 2,
            "tradeId": "2.1",
            "buyer": "client1",
            "seller": "client2",
            "price": "100.00",
            "amount": "4.000",
        }
    ]


def test_an_unreachable_grape_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["head"], ["book"], ["status", "--db", "/nonexistent"], ["lookup", "x"]):
        status, _, err = dex(capsys, *argv, "-g", "http://127.0.0.1:1", "--timeout", "2")
        assert status == 3, argv
        assert "through grape http://127.0.0.1:1" in err


def test_several_grapes_one_of_them_dead(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    # -g repeated, or URL1,URL2: a dead grape first is passed over at once.
    status, out, _ = dex(capsys, "head", "-g", dead, "-g", exchange.grapes[1], "--timeout", "3")
    assert status == 0
    assert out.splitlines()[0] == "seq 4"
    status, out, _ = dex(capsys, "lookup", "-g", f"{dead},{exchange.grapes[0]}", "submit_order")
    assert status == 0, out
    assert len(out.splitlines()) == 1
    status, out, _ = dex(
        capsys, "status", "-g", dead, "-g", exchange.grapes[0], "--db", str(exchange.journal)
    )
    assert status == 0, out
    assert "process_order      1 answering" in out
    # Every grape dead: unreachable, naming them all.
    status, _, err = dex(capsys, "head", "-g", f"{dead},http://127.0.0.1:1", "--timeout", "2")
    assert status == 3
    assert f"through grape {dead},http://127.0.0.1:1" in err
    with pytest.raises(SystemExit) as exit_:  # one malformed URL: a usage error
        main(["head", "-g", f"{dead},nonsense"])
    assert exit_.value.code == 2


def test_head_shows_the_verified_book_hash(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    _, book, _ = dex(capsys, "book", "-g", exchange.grapes[0], "--json")
    book_hash = json.loads(book)["book"]
    status, out, _ = dex(capsys, "head", "-g", exchange.grapes[1])
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "seq 4"
    assert lines[2] == f"book {book_hash}"
    assert "verified" in lines[3]
    _, out, _ = dex(capsys, "head", "-g", exchange.grapes[0], "--json")
    head = json.loads(out)
    assert (head["seq"], head["book"]) == (4, book_hash)


def _log_lines_after(log: Path, offset: int) -> list[str]:
    return log.read_bytes()[offset:].decode(errors="replace").splitlines()


def test_status_writes_nothing_into_the_workers_logs(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = [exchange.workdir / f"{w}.log" for w in ("submitOrderWorker", "processOrderWorker")]
    offsets = [log.stat().st_size for log in logs]
    status, out, _ = dex(capsys, "status", "-g", exchange.grapes[0], "--db", str(exchange.journal))
    assert status == 0, out
    assert "submit_order       1 answering" in out
    assert "process_order      1 answering" in out
    # A refusal would be logged as the request is answered: give the loggers a moment.
    time.sleep(0.5)
    for log, offset in zip(logs, offsets, strict=True):
        assert [line for line in _log_lines_after(log, offset) if "refused" in line] == []
    # ... while a request the sequencer refuses is logged (the check above can fail).
    dex(capsys, "request", "-g", exchange.grapes[0], "submit_order", "null")
    deadline = time.monotonic() + 5
    while not any("refused" in line for line in _log_lines_after(logs[0], offsets[0])):
        assert time.monotonic() < deadline, _log_lines_after(logs[0], offsets[0])
        time.sleep(0.05)


def _order_id(exchange: Running, client: str) -> str:
    from exchange.sequencer import Journal

    with Journal(exchange.journal) as journal:
        ids: list[str] = [
            e.wire["orderId"]
            for e in journal.entries()
            if e.wire["clientId"] == client and e.wire["op"] == "new"
        ]
    return ids[0]


def test_order_state_from_the_network_and_the_journal(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    buy = _order_id(exchange, "client1")
    status, out, _ = dex(capsys, "order", "client1", buy, "-g", exchange.grapes[1])
    assert status == 0, out
    assert out.splitlines()[0] == f"client1/{buy}  resting: 6.000 of 10.000 left, buy @ 100.00"
    assert out.splitlines()[1] == "  from the network's versions (seq 1..4, complete)"
    _, net, _ = dex(capsys, "order", "client1", buy, "-g", exchange.grapes[0], "--json")
    _, local, _ = dex(capsys, "order", "client1", buy, "--db", str(exchange.journal), "--json")
    by_network, by_journal = json.loads(net), json.loads(local)
    assert (by_network["source"], by_journal["source"]) == ("network", "journal")
    for record in (by_network, by_journal):
        del record["source"]
    assert by_network == by_journal
    assert [s["event"] for s in by_network["history"]] == ["placed", "rested", "filled"]
    # The cancel of an order that never was: unknown (exit 1), its rejection shown.
    status, out, _ = dex(capsys, "order", "client3", "nope", "-g", exchange.grapes[0])
    assert status == 1
    assert "client3/nope  unknown" in out
    assert "cancel rejected: ERR_ORDER_UNKNOWN" in out
    status, _, _ = dex(capsys, "order", "client1", "nope", "-g", exchange.grapes[0])
    assert status == 1


def test_open_orders_and_fills_on_the_network(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    buy, sell = _order_id(exchange, "client1"), _order_id(exchange, "client2")
    status, out, _ = dex(capsys, "orders", "client1", "-g", exchange.grapes[0], "--json")
    assert status == 0
    report = json.loads(out)
    assert [(o["orderId"], o["side"], o["price"], o["remaining"]) for o in report["orders"]] == [
        (buy, "buy", "100.00", "6.000")
    ]
    _, local, _ = dex(capsys, "orders", "client1", "--db", str(exchange.journal), "--json")
    assert json.loads(local)["orders"] == report["orders"]
    status, out, _ = dex(capsys, "fills", "client2", "-g", exchange.grapes[1], "--json")
    assert status == 0
    report = json.loads(out)
    assert report["complete"] is True
    (fill,) = report["shown"]
    assert (fill["tradeId"], fill["orderId"], fill["side"], fill["role"]) == (
        "2.1", sell, "sell", "taker"
    )  # fmt: skip
    assert (fill["counterpartyClientId"], fill["counterpartyOrderId"]) == ("client1", buy)
    _, local, _ = dex(capsys, "fills", "client2", "--db", str(exchange.journal), "--json")
    assert json.loads(local)["shown"] == report["shown"]
    status, out, _ = dex(capsys, "fills", "client1", "-g", exchange.grapes[1])
    assert status == 0
    assert (
        out.splitlines()[0] == "1 fill of client1, from the network's versions (seq 1..4, complete)"
    )
    assert out.splitlines()[2].split()[3:8] == ["buy", "maker", "100.00", "4.000", buy]


def test_a_partial_history_says_so(exchange: Running, capsys: pytest.CaptureFixture[str]) -> None:
    buy = _order_id(exchange, "client1")
    argv = ("-g", exchange.grapes[0], "--versions", "1")
    status, out, _ = dex(capsys, "order", "client1", buy, *argv)
    assert status == 0
    lines = out.splitlines()
    # The book says it rests (and with how much); its placing is older than seq 4.
    assert lines[0] == f"client1/{buy}  resting: 6.000 left, buy @ 100.00"
    assert lines[1].startswith("  from the network's versions (seq 4..4; older ones not read")
    _, out, _ = dex(capsys, "order", "client1", buy, *argv, "--json")
    record = json.loads(out)
    assert (record["complete"], record["historyFrom"], record["history"]) == (False, 4, [])
    status, out, _ = dex(capsys, "fills", "client2", *argv)
    assert status == 0
    assert out.splitlines()[0].startswith("0 fills of client2, from the network's versions (seq 4")


def test_status_flags_an_address_announced_for_two_names(
    exchange: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last in the module: it leaves a stray announce on the grapes."""
    import anyio

    from transports.grenache import GrapeLink

    _, out, _ = dex(capsys, "lookup", "-g", exchange.grapes[0], "submit_order")
    sequencer = out.split()[0]

    async def announce() -> None:
        link = GrapeLink(exchange.grapes[0])
        try:
            await link.announce("orderbook_updated", int(sequencer.rsplit(":", 1)[1]))
        finally:
            await link.aclose()

    anyio.run(announce)
    status, out, _ = dex(capsys, "status", "-g", exchange.grapes[0], "--json")
    assert status == 0, out
    (submit,) = [s for s in json.loads(out)["services"] if s["name"] == "submit_order"]
    assert submit["answering"] == [sequencer]
    assert submit["alsoAnnouncedAs"] == {sequencer: "orderbook_updated"}
    _, out, _ = dex(capsys, "status", "-g", exchange.grapes[0])
    assert f"{sequencer}  ok (also announced as orderbook_updated" in out
