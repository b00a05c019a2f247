"""A grape down, as real processes: order entry goes on, workers keep serving, logs stay short.

Each test starts its own grapes (it kills one of them by its PID) and both workers as
`bin/` processes, the way docs/operations.md's run book does, and the clients as
`bin/client.py --once --json`. What is checked is what an operator would see: exit
statuses, the clients' JSON lines, the workers' logs, and `dex replay` of the journal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.grapes import restarted_grape, running_grapes

from e2e.harness import PYTHON, REPO, ClientRun, Exchange, Proc, _env, exchange_on

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

_STATE = re.compile(r"(?P<what>.+?) (?P<state>fails|works again)\b")
_STAMP = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")


def workers(exchange: Exchange) -> tuple[Proc, Proc]:
    """The submit worker's and the process worker's processes."""
    assert exchange.submit is not None
    assert exchange.process is not None
    return exchange.submit, exchange.process


def state_changes(proc: Proc) -> list[tuple[str, str]]:
    """``(what, "fails" | "works again")`` for each state-change line of a worker's log."""
    changes = []
    for line in proc.text().splitlines():
        stamped = _STAMP.match(line)
        if stamped is None:
            continue
        found = _STATE.match(stamped["message"])
        if found is not None:
            changes.append((found["what"], found["state"]))
    return changes


def assert_one_line_per_state_change(proc: Proc) -> None:
    """Each retried activity alternates "fails" / "works again": never twice the same."""
    last: dict[str, str] = {}
    for what, state in state_changes(proc):
        assert last.get(what, "works again") != state, f"{what} {state} twice:\n{proc.text()}"
        last[what] = state
    # And nothing else is logged over and over either.
    messages = [m["message"] for line in proc.text().splitlines() if (m := _STAMP.match(line))]
    repeated = {m for m in messages if messages.count(m) > 1}
    assert not repeated, repeated


def buy(exchange: Exchange, client: str, grape: int, amount: str = "1") -> ClientRun:
    return exchange.run_client(
        [f"clientId={client}", "type=Buy", f"amount={amount}", "price=100"], grape=grape
    )


def assert_replica_is_the_journal(exchange: Exchange, run: ClientRun) -> None:
    replay = exchange.replay(upto=run.done["seq"])
    assert run.done["book"] == replay["book"]


def test_orders_are_journaled_while_the_matchers_grape_is_down_and_trade_once_it_is_back(
    tmp_path: Path,
) -> None:
    with running_grapes(2) as grapes, exchange_on(grapes, tmp_path) as exchange:
        submit, process = workers(exchange)
        seller = exchange.run_client(["clientId=seller", "type=Sell", "amount=5", "price=100"])
        assert seller.returncode == 0, seller.stderr
        os.kill(grapes[1].pid, signal.SIGKILL)  # the process worker's grape
        killed = time.monotonic()
        # A new client through the live grape cannot announce itself (its grape's only
        # DHT peer is gone) and does not need to: its order is journaled at once.
        buyer = exchange.start_client(
            ["clientId=buyer", "type=Buy", "amount=2", "price=100"], grape=0, timeout=90
        )
        buyer.wait_for_text('"event":"submitted"', timeout=25)
        journaled = time.monotonic() - killed
        # The process worker keeps serving: the new client's replica gets the book of
        # seq 1 through it (orderbook_head), though it cannot publish seq 2 yet. The
        # replica loads while the order is submitted, so either line may come first.
        buyer.wait_for_text('"event":"book","seq":1,', timeout=25)
        assert buyer.alive()
        process.wait_for_text("announcing ['process_order', 'orderbook_head', 'markets']", 15)
        # The submit worker reaches the process worker, which cannot store the version.
        process.wait_for_text("storing versions in the DHT fails", 25)
        time.sleep(2)  # a few more failed attempts, which must not be logged
        with restarted_grape(grapes[1], [grapes[0]]):
            restarted = time.monotonic()
            run = exchange.finish(buyer, timeout=30)
            assert run.returncode == 0, run.stderr
            assert run.filled() == 2000
            traded = time.monotonic() - restarted
            # New clients through either grape trade at once.
            for grape in (0, 1):
                late = buy(exchange, f"late{grape}", grape)
                assert late.returncode == 0, late.stderr
                assert late.filled() == 1000
            assert_replica_is_the_journal(exchange, late)
            # The process worker announces again through its grape (retries are capped at
            # the 5 s announce interval).
            process.wait_for_text("works again (", timeout=10)
        print(f"journaled {journaled:.1f} s after the kill; traded {traded:.1f} s after restart")
        assert journaled < 20
        assert traded < 10
        assert ("storing versions in the DHT", "works again") in state_changes(process)
        for worker in (process, submit):
            assert_one_line_per_state_change(worker)


def test_with_one_of_three_grapes_down_a_new_client_trades(tmp_path: Path) -> None:
    with running_grapes(3) as grapes, exchange_on(grapes, tmp_path) as exchange:
        seller = exchange.run_client(
            ["clientId=seller", "type=Sell", "amount=5", "price=100"], grape=2
        )
        assert seller.returncode == 0, seller.stderr
        os.kill(grapes[2].pid, signal.SIGKILL)  # a grape no worker uses
        # Every DHT call now waits for the dead node (about 2.5 s each): slow, not stuck.
        run = buy(exchange, "buyer", 0)
        assert run.returncode == 0, run.stderr
        assert run.filled() == 1000
        assert_replica_is_the_journal(exchange, run)
        for worker in workers(exchange):
            assert_one_line_per_state_change(worker)


def test_a_second_worker_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    with running_grapes(2) as grapes, exchange_on(grapes, tmp_path) as exchange:
        submit, process = workers(exchange)
        seconds = [
            (submit, "bin/submitOrderWorker.py", grapes[0], exchange.journal),
            (process, "bin/processOrderWorker.py", grapes[1], exchange.process_db),
        ]
        for first, script, grape, db in seconds:
            second = exchange.spawn("second", [script, f"grape={grape.url}", "--db", str(db)])
            assert second.popen.wait(timeout=30) == 1
            assert (
                f"{db} is in use by another worker (pid {first.pid}), which holds {db}.lock:"
                " stop that one first, or give this one another --db"
            ) in second.text()
            assert "Traceback" not in second.text()
            assert first.alive()
        # The first ones serve on, and the readers of the journal read while they run.
        run = exchange.run_client(["clientId=after", "type=Buy", "amount=1", "price=99"])
        assert run.returncode == 0, run.stderr
        assert_replica_is_the_journal(exchange, run)
        journal = subprocess.run(
            [PYTHON, "-m", "exchange.tools", "journal", "--db", str(exchange.journal)],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert journal.returncode == 0, journal.stderr
        assert "after" in journal.stdout
