"""A trader's day on real grapes (issue 16): the run book twice, modify, cancel-all, and
one-shot clients that leave nothing behind.

The run book test is the README's, as a new user types it (but on grapes of free ports,
given as ``grape=URL``, so that tests never collide): the `bin/` launchers started
in one working directory (so the workers keep `data/` there), with the user's own HOME
(no ``DEX_KEY_DIR``: the client keys and the pinned matcher keys are in
``~/.config/dex/keys``), then everything stopped, ``data/`` removed (what ``make clean``
does to it) and the whole run book again: new sequencer and matcher keys, a new
exchange instance, and no manual step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.grapes import running_grapes

from e2e.harness import REPO, ClientRun, Exchange, Proc, running_exchange, start_proc
from transports.grenache import GrenacheTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _user_env(home: Path) -> dict[str, str]:
    """A user's environment: HOME is `home`, keys in their default place under it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEX_KEY_DIR", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _client(workdir: Path, env: dict[str, str], *words: str) -> ClientRun:
    argv = [str(REPO / "bin" / "client"), *words, "--once", "--json", "--timeout=40"]
    proc = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return ClientRun(argv, proc.returncode, records, proc.stderr)


def _run_book(workdir: Path, env: dict[str, str]) -> list[ClientRun]:
    """Grapes, both workers from `workdir`, two clients; everything stopped after."""
    with running_grapes(2) as grapes:
        procs: list[Proc] = []
        try:
            for name, grape in (("submitOrderWorker", 0), ("processOrderWorker", 1)):
                argv = [str(REPO / "bin" / name), f"grape={grapes[grape].url}"]
                procs.append(start_proc(name, argv, workdir / f"{name}.log", cwd=workdir, env=env))
                procs[-1].wait_for_text("worker ready", 30)
            url = grapes[0].url
            buyer = _client(workdir, env, "clientId=client1", "type=Buy", "amount=10",
                            "price=100", f"grape={url}")  # fmt: skip
            seller = _client(workdir, env, "clientId=client2", "type=Sell", "amount=4",
                             "price=99.5", f"grape={grapes[1].url}")  # fmt: skip
            return [buyer, seller]
        finally:
            for proc in reversed(procs):
                proc.stop()


def test_the_run_book_works_twice_in_one_home_with_fresh_state(tmp_path: Path) -> None:
    """Issue 16, friction 1: the second run used to warn ERR_AUTH, submit anyway, and
    time out, because the client pinned the first exchange's matcher key for ever."""
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    env = _user_env(home)
    pins = home / ".config" / "dex" / "keys" / "known" / "matchers"
    exchanges = []  # (instance, matcher key, first client's stderr) of each run
    for attempt in (1, 2):
        runs = _run_book(workdir, env)
        for run in runs:
            assert run.returncode == 0, f"run {attempt}: {run.argv}\n{run.stderr}\n{run.records}"
        buyer, seller = runs
        assert buyer.done["outcome"].endswith("10.000 resting at 100.00"), buyer.done
        assert seller.filled() == 4000, seller.records
        assert "ERR_AUTH" not in buyer.stderr + seller.stderr
        data = workdir / "data"
        exchanges.append(((data / "sequencer.pub").read_text().strip(),
                          (data / "matcher.pub").read_text().strip(), buyer.stderr))  # fmt: skip
        shutil.rmtree(data)  # `make clean`: new keys, a new exchange
    assert exchanges[0][0] != exchanges[1][0]
    for _, _, stderr in exchanges:
        # The first client of a new exchange says so, once, in one line.
        notices = [line for line in stderr.splitlines() if "new exchange" in line]
        assert len(notices) == 1, stderr
    # Each exchange instance (its sequencer's key) has its matcher key pinned.
    for instance, matcher, _ in exchanges:
        assert (pins / f"{instance}.pub").read_text().strip() == matcher
    assert len(list(pins.iterdir())) == 2


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("trader")) as exchange:
        yield exchange


def _ok(exchange: Exchange, run: ClientRun) -> dict[str, Any]:
    assert run.returncode == 0, f"{run.argv}\n{run.stderr}\n{run.records}"
    done = run.done
    assert done["book"] == exchange.replay(upto=done["seq"])["book"]
    return done


def test_modify_from_the_cli(exchange: Exchange) -> None:
    """Issue 16: the client refused op=modify, though the protocol and core have it."""
    _ok(exchange, exchange.run_client(
        ["clientId=amender", "orderId=m1", "type=Sell", "amount=3", "price=150"]))  # fmt: skip
    run = exchange.run_client(
        ["clientId=amender", "op=modify", "orderId=m1", "price=151", "amount=2"], grape=1
    )
    done = _ok(exchange, run)
    assert "modified to 2.000 at 151.00" in done["outcome"], done
    (modified,) = run.of("modified")
    assert (modified["price"], modified["amount"]) == ("151.00", "2.000")
    # A modify of an order it does not have: rejected by the matcher, exit 4.
    rejected = exchange.run_client(["clientId=amender", "op=modify", "orderId=nope", "price=1"])
    assert rejected.returncode == 4, rejected.stderr


def test_cancel_all_cancels_every_resting_order_of_the_client(exchange: Exchange) -> None:
    """Issue 16: cancel-all for a client, as a batch of signed cancels."""
    for i, price in enumerate(("80", "81", "82")):
        words = ["clientId=quitter", f"orderId=q{i}", "type=Buy", "amount=1", f"price={price}"]
        _ok(exchange, exchange.run_client(words))
    stayer = ["clientId=stayer", "orderId=s1", "type=Buy", "amount=1", "price=79"]
    _ok(exchange, exchange.run_client(stayer))
    before = exchange.replay()["orders"]
    run = exchange.run_client(["clientId=quitter", "op=cancelAll"], grape=1)
    done = _ok(exchange, run)
    assert done["outcome"] == "cancelAll: 3 of 3 resting orders cancelled", done
    assert sorted(r["orderId"] for r in run.of("submitted")) == ["q0", "q1", "q2"]
    assert sorted(r["orderId"] for r in run.of("cancelled")) == ["q0", "q1", "q2"]
    # Nothing of another client's, and nothing left to cancel the second time.
    again = exchange.run_client(["clientId=quitter", "op=cancelAll"])
    assert _ok(exchange, again)["outcome"] == "cancelAll: 0 of 0 resting orders cancelled"
    assert not again.of("submitted")
    assert exchange.replay()["orders"] == before - 3  # the stayer's order rests on


async def _announced(grape: str, name: str) -> list[str]:
    async with GrenacheTransport(grape=grape) as transport:
        return await transport.link.lookup(name, fresh=True)


def test_one_shot_clients_are_not_announced(exchange: Exchange) -> None:
    """Issue 16, friction 6: every `--once` client used to stay announced after it
    exited (``orderbook_updated 13 announced``): a dead address the matcher tries at
    every broadcast. A `--once` client follows the head by long polls; it announces
    nothing."""
    before = {g: set(anyio.run(_announced, g, "orderbook_updated")) for g in exchange.grapes}
    runs = exchange.run_clients(
        [["clientId=oneshot1", "type=Buy", "amount=1", "price=60"],
         ["clientId=oneshot2", "type=Sell", "amount=1", "price=200"]]
    )  # fmt: skip
    for run in runs:
        _ok(exchange, run)
    time.sleep(1.5)  # an announce would have reached the DHT by now
    after = {g: set(anyio.run(_announced, g, "orderbook_updated")) for g in exchange.grapes}
    assert after == before
