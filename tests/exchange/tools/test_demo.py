"""`make demo`: the whole exchange in one process, checked against the replay."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.tools import demo_orders, run_demo

REPO = Path(__file__).resolve().parents[3]


def test_demo_orders_are_deterministic_and_valid() -> None:
    from orderbook_core import DEFAULT_SPEC, parse_command

    orders = demo_orders(["a", "b", "c"], 30, seed=3)
    assert orders == demo_orders(["a", "b", "c"], 30, seed=3)
    assert {o["clientId"] for o in orders} == {"a", "b", "c"}
    for seq, order in enumerate(orders, start=1):
        parse_command(order, DEFAULT_SPEC, seq=seq, ts=0)


def test_demo_converges_in_process() -> None:
    out = io.StringIO()
    assert run_demo(clients=3, orders=30, seed=11, as_json=True, out=out) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = {r["event"] for r in records}
    assert {"started", "submitted", "trade", "level", "replay", "replica", "result"} <= kinds
    replay = next(r for r in records if r["event"] == "replay")
    replicas = [r for r in records if r["event"] == "replica"]
    assert len(replicas) == 3
    assert all(
        (r["seq"], r["book"], r["ok"]) == (replay["seq"], replay["book"], True) for r in replicas
    )
    assert records[-1] == {"event": "result", "ok": True, "replicas": 3}


@pytest.mark.timeout(60)
def test_make_demo_command_runs() -> None:
    """What `make demo` runs: `python -m exchange.tools demo`, a few seconds at most."""
    proc = subprocess.run(
        [sys.executable, "-m", "exchange.tools", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trades:" in proc.stdout
    assert "OK: all 4 replicas hold the replay's book hash" in proc.stdout


def test_demo_markets_each_converge_to_their_own_replay() -> None:
    """`dex demo --markets 3`: three pipelines on one network, each checked on its own."""
    out = io.StringIO()
    assert run_demo(clients=2, orders=20, seed=5, as_json=True, out=out, markets=3) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    markets = ["MKT1", "MKT2", "MKT3"]
    assert all(r["market"] in markets for r in records[:-1]), records
    replays = {}
    for market in markets:
        mine = [r for r in records if r.get("market") == market]
        kinds = {r["event"] for r in mine}
        assert {"started", "submitted", "replay", "replica", "result"} <= kinds
        replay = next(r for r in mine if r["event"] == "replay")
        replays[market] = (replay["seq"], replay["book"])
        replicas = [r for r in mine if r["event"] == "replica"]
        assert len(replicas) == 2
        assert all((r["seq"], r["book"], r["ok"]) == (*replays[market], True) for r in replicas)
        # Every order submitted in this market was numbered by this market's sequencer.
        seqs = sorted(r["seq"] for r in mine if r["event"] == "submitted")
        assert seqs == list(range(1, replay["seq"] + 1))
        assert mine[-1] == {"event": "result", "ok": True, "replicas": 2, "market": market}
    assert len(set(replays.values())) == 3  # each market its own orders, its own book
    total = records[-1]
    assert total["event"] == "total"
    assert total["ok"] is True
    assert total["markets"] == 3
    assert total["failed"] == []
    assert total["replicas"] == 6
    assert total["submitted"] == sum(1 for r in records if r["event"] == "submitted")


def test_demo_markets_text_ends_with_a_total_line() -> None:
    out = io.StringIO()
    assert run_demo(clients=2, orders=8, seed=2, out=out, markets=2) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("dex demo: 2 markets (MKT1, MKT2)")
    assert "MKT1 OK: all 2 replicas hold the replay's book hash" in lines
    assert "MKT2 OK: all 2 replicas hold the replay's book hash" in lines
    assert lines[-1].startswith("OK: 2 markets, ")
    assert lines[-1].endswith("all 4 replicas hold their market's replay's book hash")
