"""The whole pipeline with the journal on NATS JetStream, as real processes: a real
nats-server, two real grapes, ``bin/submitOrderWorker.py --journal nats://...``, the
matcher and clients. Every client's replica equals `dex replay` of the stream's entries
(copied into a SQLite journal, the file `dex replay` reads)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.grapes import running_grapes
from support.nats import running_nats
from support.ports import free_port

from e2e.harness import PYTHON, REPO, ClientRun, Exchange, _env
from exchange.sequencer import Journal, open_journal

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def test_orders_through_a_jetstream_journal_match_the_replay(tmp_path: Path) -> None:
    with (
        running_nats(1, tmp_path / "nats") as servers,
        running_grapes(2) as grapes,
    ):
        url = servers[0].url
        exchange = Exchange([g.url for g in grapes], tmp_path)
        try:
            exchange.start_process()
            exchange.submit = exchange.spawn(
                "submit",
                [
                    "bin/submitOrderWorker.py",
                    f"grape={exchange.grapes[0]}",
                    "--journal",
                    url,
                    "--db",
                    str(exchange.journal),
                ],
            )
            exchange.submit.wait_for_text("submit_order worker ready", 30)
            assert "stream DEX_BTC-USD" in exchange.submit.text()
            (seller,) = exchange.run_clients(
                [["clientId=seller", "type=Sell", "amount=10", "price=100"]]
            )
            buyers = exchange.run_clients(
                [
                    ["clientId=buyerA", "type=Buy", "amount=7", "price=100"],
                    ["clientId=buyerB", "type=Buy", "amount=7", "price=100"],
                    ["clientId=rester", "type=Buy", "amount=2", "price=99"],
                ]
            )
            runs: list[ClientRun] = [seller, *buyers]
            for run in runs:
                assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
            assert sum(b.filled() for b in buyers) == 10_000
            # The journal is in the stream only: copy it where `dex replay` reads one.
            assert not exchange.journal.exists()
            with open_journal(url) as stream, Journal(exchange.journal) as copy:
                entries = list(stream.entries())
                copy.append(entries)
            assert [e.seq for e in entries] == [1, 2, 3, 4]
            for run in runs:
                done = run.done
                assert done["book"] == exchange.replay(upto=done["seq"])["book"], run.argv
            final = exchange.watch_once("auditor")
            assert final.done["book"] == exchange.replay()["book"]
            assert final.done["seq"] == 4
        finally:
            exchange.close()


def test_an_unreachable_nats_server_exits_3_naming_it(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [
            PYTHON,
            "bin/submitOrderWorker.py",
            "grape=http://127.0.0.1:1",
            "--journal",
            url,
            "--db",
            str(tmp_path / "j.db"),
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    assert url in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
