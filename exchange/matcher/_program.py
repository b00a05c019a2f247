"""The matcher's command line: `bin/processOrderWorker.py`, `dex-process-order-worker`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.matcher._snapshots import (
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_SNAPSHOT_KEEP,
)
from exchange.matcher._worker import GaveUp, ProcessWorker
from exchange.protocol import PROCESS_ORDER
from exchange.runtime import (
    DEFAULT_MATCHER_GRAPE,
    EXIT_FAILED,
    Runner,
    WorkerProgram,
    market_path,
    read_public_key,
    read_trusted_key,
    run_worker_program,
)
from orderbook_core import MarketSpec
from transports import Transport

__all__ = ["DEFAULT_STATE", "main"]

_N = TypeVar("_N", int, float)

DEFAULT_STATE = "data/process_state.db"
"""Where the matcher keeps its applied log unless `--db` says otherwise."""


def _build(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    sequencer_key = _sequencer_key(args)
    return lambda transport: (
        _books(
            args,
            ProcessWorker(
                transport,
                args.db,
                MarketSpec(market=args.market),
                port=args.port,
                metrics=args.metrics,
                sequencer_key=sequencer_key,
                signing_key=args.key,
                snapshot_every=args.snapshot_every,
                snapshot_interval=args.snapshot_interval,
                snapshot_keep=args.snapshot_keep,
                standby=args.standby,
                give_up_after=args.give_up_after,
            ),
        ).run
    )


def _books(args: argparse.Namespace, worker: ProcessWorker) -> ProcessWorker:
    worker.books.background = args.book_pages_after
    return worker


def _sequencer_key(
    args: argparse.Namespace,
) -> Ed25519PublicKey | Callable[[], Ed25519PublicKey | None]:
    """`--sequencer-key`, else the ``sequencer.pub`` the sequencer writes beside its
    journal at its first start (read when the first request comes if not there yet)."""
    if args.sequencer_key is not None:
        return read_trusted_key(args.sequencer_key)
    path = Path(args.db).parent / market_path("sequencer.pub", args.market)
    if not path.exists():
        logging.warning("%s not there yet: process_order is refused until it is", path)
    return partial(read_public_key, path)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sequencer-key",
        metavar="HEX|PATH",
        help="the only key process_order requests may be signed by: 64 hex, or a .pub "
        "file (default: sequencer.pub beside --db, sequencer-X.pub for market X, which "
        "the sequencer writes at its first start when both run from the same directory)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=_at_least_zero(int),
        default=DEFAULT_SNAPSHOT_EVERY,
        metavar="N",
        help=f"snapshot the state every N applied commands (default {DEFAULT_SNAPSHOT_EVERY}; "
        "0: not by count); a restart replays only the commands after the newest snapshot",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=_at_least_zero(float),
        default=DEFAULT_SNAPSHOT_INTERVAL,
        metavar="S",
        help="and at least every S seconds while commands come in, whichever comes first "
        f"(default {DEFAULT_SNAPSHOT_INTERVAL:g}; 0: not by time)",
    )
    parser.add_argument(
        "--snapshot-keep",
        type=_at_least_zero(int),
        default=DEFAULT_SNAPSHOT_KEEP,
        metavar="K",
        help=f"snapshots kept in <db>.snapshots/ (default {DEFAULT_SNAPSHOT_KEEP}; 0: take none)",
    )

    parser.add_argument(
        "--standby",
        action="store_true",
        help="a hot standby on this machine: while another matcher runs on the same --db, "
        "follow its applied log (serving nothing), and take over the moment it stops "
        "(give both the same --port)",
    )

    parser.add_argument(
        "--book-pages-after",
        action="store_true",
        help="announce a version once its command and event pages and root are stored,"
        " and put its book pages in the background (replicas reached sooner, more and"
        " smaller versions: more CPU per order; only the newest version is readable"
        " whole; docs/benchmarks.md)",
    )
    parser.add_argument(
        "--give-up-after",
        type=_at_least_zero(float),
        default=0.0,
        metavar="S",
        help="exit (status 1) once storing versions in the DHT has failed for S seconds, "
        "so that a standby with other grapes takes over (default 0: retry for ever)",
    )


def _at_least_zero(kind: Callable[[str], _N]) -> Callable[[str], _N]:
    def parse(text: str) -> _N:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
        return value

    return parse


_PROGRAM = WorkerProgram(
    name=PROCESS_ORDER,
    role="matcher",
    prog="processOrderWorker.py",
    description="Serve process_order and orderbook_head: apply sequenced orders, "
    "publish each version of the book to the DHT, broadcast orderbook_updated.",
    default_grape=DEFAULT_MATCHER_GRAPE,
    default_db=DEFAULT_STATE,
    db_help="SQLite state",
    port_help="port to serve on (default: a free one). Give a fixed port in production: "
    "grapes keep a dead worker's address announced, and a restarted worker on the "
    "same port takes it over",
    build=_build,
    key_name="matcher",
    add_arguments=_add_arguments,
    stops=((GaveUp, EXIT_FAILED),),
)


def main(argv: list[str] | None = None) -> int:
    """Run the process_order worker with `argv` (default: the process's); exit status."""
    return run_worker_program(_PROGRAM, sys.argv[1:] if argv is None else argv)
