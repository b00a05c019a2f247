"""`dex order`, `dex orders` and `dex fills` as a trader and an operator run them, on
real grapes with both workers as processes: the network and the journal give the same
answers, and while the matcher is stalled the journal still answers (the network cannot:
exit 3, not a wrong answer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness import PYTHON, REPO, Exchange, _env, running_exchange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("orders")) as exchange:
        for words in (
            ["clientId=ann", "orderId=a-bid", "type=Buy", "amount=10", "price=100"],
            ["clientId=bob", "orderId=b-hit", "type=Sell", "amount=4", "price=100"],
            ["clientId=bob", "orderId=b-ask", "type=Sell", "amount=1", "price=103"],
            ["clientId=bob", "op=cancel", "orderId=b-ask"],
        ):
            run = exchange.run_client(words)
            assert run.returncode == 0, f"{words}\n{run.stderr}\n{run.records}"
        yield exchange


def dex(*argv: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = subprocess.run(
        [PYTHON, "-m", "exchange.tools", *argv],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def both(exchange: Exchange, *argv: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`argv --json` from the network and from the journal, without their `source`."""
    answers = []
    for source in (("-g", exchange.grapes[1]), ("--db", str(exchange.journal))):
        status, out, err = dex(*argv, *source, "--json")
        assert status in (0, 1), err
        record: dict[str, Any] = json.loads(out)
        assert record.pop("source") == ("network" if source[0] == "-g" else "journal")
        answers.append(record)
    return answers[0], answers[1]


def test_network_and_journal_agree(exchange: Exchange) -> None:
    network, journal = both(exchange, "order", "ann", "a-bid")
    assert network == journal
    assert (network["state"], network["remaining"], network["filled"]) == (
        "resting", "6.000", "4.000"
    )  # fmt: skip
    network, journal = both(exchange, "order", "bob", "b-ask")
    assert network == journal
    assert (network["state"], network["reason"]) == ("cancelled", "by its owner")
    network, journal = both(exchange, "orders", "ann")
    assert network == journal
    assert [(o["orderId"], o["remaining"]) for o in network["orders"]] == [("a-bid", "6.000")]
    network, journal = both(exchange, "fills", "bob")
    assert network == journal
    assert [(f["tradeId"], f["counterpartyOrderId"]) for f in network["shown"]] == [
        ("2.1", "a-bid")
    ]


def test_an_order_never_sent_is_unknown(exchange: Exchange) -> None:
    for source in (("-g", exchange.grapes[0]), ("--db", str(exchange.journal))):
        status, out, _ = dex("order", "ann", "never-sent", *source)
        assert status == 1
        assert out.startswith("ann/never-sent  unknown: no such order in ")


def test_with_the_matcher_stalled_the_journal_still_answers(exchange: Exchange) -> None:
    assert exchange.process is not None
    pid = exchange.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        status, out, _ = dex("order", "ann", "a-bid", "--db", str(exchange.journal))
        assert status == 0
        assert out.startswith("ann/a-bid  resting: 6.000 of 10.000 left")
        status, _, err = dex("order", "ann", "a-bid", "-g", exchange.grapes[0], "--timeout", "1")
        assert status == 3, err
    finally:
        os.kill(pid, signal.SIGCONT)
    status, out, _ = dex("order", "ann", "a-bid", "-g", exchange.grapes[0])
    assert status == 0
    assert out.startswith("ann/a-bid  resting: 6.000 of 10.000 left")


def test_the_journal_marks_the_rejected_cancel(exchange: Exchange) -> None:
    run = exchange.run_client(["clientId=carl", "op=cancel", "orderId=nothing"])
    assert run.returncode != 0  # the matcher rejected it (the client's code says so)
    status, out, _ = dex("journal", "--db", str(exchange.journal), "--client", "carl", "--json")
    assert status == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["rejected"] == "ERR_ORDER_UNKNOWN"
