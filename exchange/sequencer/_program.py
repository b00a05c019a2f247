"""The sequencer's command line: `bin/submitOrderWorker.py`, `dex-submit-order-worker`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack

from exchange.protocol import SUBMIT_ORDER, ArgumentError, StorageUnavailable
from exchange.runtime import (
    DEFAULT_GRAPE,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Runner,
    WorkerProgram,
    market_path,
    run_worker_program,
)
from exchange.sequencer._backend import JournalConflict
from exchange.sequencer._open import open_journal, open_lease
from exchange.sequencer._worker import SteppedDown, SubmitWorker
from orderbook_core import MarketSpec
from transports import Transport

__all__ = ["DEFAULT_JOURNAL", "main"]

DEFAULT_JOURNAL = "data/submit_journal.db"
"""Where the sequencer keeps its journal unless `--journal` (or `--db`) says otherwise."""

DEFAULT_COMMIT_INTERVAL = 0.005
"""Seconds between the starts of two commits, at least, while they come closer and the
last one held several entries."""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal",
        metavar="sqlite:PATH|nats://HOST:PORT[,nats://...]",
        help="where the journal is: a SQLite file (default: sqlite:<--db>; with several "
        "markets, each market's name is put in it), or the market's stream on NATS "
        "JetStream servers (needs the jetstream extra)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=_seconds,
        default=3.0,
        metavar="SECONDS",
        help="JetStream only: how long the active sequencer's lease lives unrenewed, so "
        "how soon a standby takes over after it died (default 3; set when the lease's "
        "bucket is created)",
    )
    parser.add_argument(
        "--forward-interval",
        type=_interval,
        default=0.0,
        metavar="SECONDS",
        help="under load, send process_order at most once per this many seconds, so each "
        "version covers more orders (fewer DHT puts per order, up to this much latency); "
        "default 0: as soon as the matcher answered",
    )
    parser.add_argument(
        "--commit-interval",
        type=_commit_interval,
        default=DEFAULT_COMMIT_INTERVAL,
        metavar="SECONDS",
        help="while commits follow each other closer than this and the last held several "
        "entries, wait until this long after the last one began, so one commit covers more "
        "requests (up to this much latency; a lone client's one-at-a-time orders never "
        f"wait; default {DEFAULT_COMMIT_INTERVAL}; 0: none)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"not 0.5..600 seconds: {text}")
    return value


def _interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"not 0..10 seconds: {text}")
    return value


def _commit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"not 0..1 seconds: {text}")
    return value


def _build(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    spec = MarketSpec(market=args.market)
    location = args.journal or f"sqlite:{args.db}"
    if args.journal and args.several and not location.startswith("nats://"):
        # several markets: each its own file (a JetStream journal is a stream per market)
        location = "sqlite:" + market_path(location.removeprefix("sqlite:"), args.market)
    journal = open_journal(location, spec)
    stack.callback(journal.close)
    lease = open_lease(journal, ttl=args.lease_ttl)  # a standby until it holds it
    return lambda transport: (
        SubmitWorker(
            transport,
            journal,
            spec,
            port=args.port,
            forward_interval=args.forward_interval,
            metrics=args.metrics,
            signing_key=args.key,
            lease=lease,
            commit_interval=args.commit_interval,
        ).run
    )


_PROGRAM = WorkerProgram(
    name=SUBMIT_ORDER,
    role="sequencer",
    prog="submitOrderWorker.py",
    description="Serve submit_order: validate, sequence and journal orders, then "
    "forward them in order to process_order.",
    default_grape=DEFAULT_GRAPE,
    default_db=DEFAULT_JOURNAL,
    db_help="SQLite journal",
    port_help="port to serve on (default: a free one)",
    build=_build,
    key_name="sequencer",
    add_arguments=_add_arguments,
    stops=(
        (StorageUnavailable, EXIT_UNREACHABLE),  # NATS unreachable at start
        (ArgumentError, EXIT_USAGE),
        (SteppedDown, EXIT_FAILED),
        (JournalConflict, EXIT_FAILED),
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Run the submit_order worker with `argv` (default: the process's); exit status."""
    return run_worker_program(_PROGRAM, sys.argv[1:] if argv is None else argv)
