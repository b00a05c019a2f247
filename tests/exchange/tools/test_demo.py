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
