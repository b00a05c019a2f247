"""The matcher's command line: `bin/processOrderWorker.py`, `dex-process-order-worker`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from string import hexdigits
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.matcher._snapshots import (
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_SNAPSHOT_KEEP,
)
from exchange.matcher._standby import Deposed
from exchange.matcher._worker import GaveUp, ProcessWorker
from exchange.protocol import PROCESS_ORDER, ArgumentError, StorageUnavailable
from exchange.runtime import (
    DEFAULT_MATCHER_GRAPE,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Runner,
    WorkerProgram,
    market_path,
    read_public_key,
    read_trusted_key,
    run_worker_program,
)
from exchange.versions import DEFAULT_BOOK_INTERVAL
from orderbook_core import MarketSpec
from transports import Transport

__all__ = ["DEFAULT_STATE", "main"]

_N = TypeVar("_N", int, float)

DEFAULT_STATE = "data/process_state.db"
"""Where the matcher keeps its applied log unless `--db` says otherwise."""


def _build(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    sequencer_key = _sequencer_key(args)

    def worker(transport: Transport) -> ProcessWorker:
        process = ProcessWorker(
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
        )
        process.books.background = not args.book_pages_first
        process.books.interval = args.book_interval
        process.linger = args.version_linger
        return process

    if args.journal is None:
        return lambda transport: worker(transport).run
    return _on_jetstream(args, stack, worker)


def _on_jetstream(
    args: argparse.Namespace, stack: ExitStack, worker: Callable[[Transport], ProcessWorker]
) -> Callable[[Transport], Runner]:
    """`--journal nats://...`: one of the market's matchers, active while it holds the
    lease in the market's KV bucket (`KVStandby`)."""
    servers = [url.strip() for url in args.journal.split(",") if url.strip()]
    if args.standby or not servers or not all(u.startswith("nats://") for u in servers):
        raise ArgumentError("--journal: nats://HOST:PORT[,nats://...] (and no --standby)")
    try:
        from exchange.matcher._kv_lease import MatcherKV
        from exchange.matcher._kv_standby import on_jetstream, run_with_kv_lease
    except ImportError as exc:
        raise ArgumentError(
            "--journal: needs nats-py: pip install 'distributed-exchange[jetstream]'"
        ) from exc
    spec = MarketSpec(market=args.market)
    kv = MatcherKV(servers, spec, ttl=args.lease_ttl)
    stack.callback(kv.close)

    def make(transport: Transport) -> Runner:
        process = worker(transport)
        return partial(run_with_kv_lease, process, on_jetstream(process, kv))

    return make


def _sequencer_key(
    args: argparse.Namespace,
) -> Ed25519PublicKey | Callable[[], Ed25519PublicKey | None]:
    """`--sequencer-key`, else the ``sequencer.pub`` the sequencer writes beside its
    journal at its first start (read when the first request comes if not there yet)."""
    if args.sequencer_key is not None and args.several:
        if len(args.sequencer_key) == 64 and all(c in hexdigits for c in args.sequencer_key):
            raise ArgumentError("--sequencer-key: with several markets, give a .pub file")
        return read_trusted_key(market_path(args.sequencer_key, args.market))
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
        "the sequencer writes at its first start when both run from the same directory; "
        "with several markets, a .pub file with each market's name put in it)",
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
        "--journal",
        metavar="nats://HOST:PORT[,nats://...]",
        help="the market's journal is on these JetStream servers: this matcher is one of "
        "the market's matchers (each with its own --db, any machine, the same --key-file), "
        "active while it holds the lease in the market's KV bucket, else a standby that "
        "follows the active one's versions (default: a lone matcher; needs the jetstream "
        "extra)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=_ttl,
        default=3.0,
        metavar="SECONDS",
        help="with --journal: how long the active matcher's lease lives unrenewed, so how "
        "soon a standby takes over after it died (default 3)",
    )

    parser.add_argument(
        "--book-pages-after",
        action="store_true",
        help="the default now (a version is announced once its command and event pages"
        " and root are stored; its book pages follow in the background); kept for scripts",
    )
    parser.add_argument(
        "--book-pages-first",
        action="store_true",
        help="put every version's book pages before its root, as before (each version's"
        " book stored with it; fewer, bigger versions, later replicas)",
    )
    parser.add_argument(
        "--book-interval",
        type=_at_least_zero(float),
        default=DEFAULT_BOOK_INTERVAL,
        metavar="S",
        help="book pages in the background: at most one flush every S seconds (the"
        " versions of S share it; default %(default)s)",
    )
    parser.add_argument(
        "--version-linger",
        type=_at_least_zero(float),
        default=0.3,
        metavar="K",
        help="after each version, answer the sequencer K times the version's time later"
        " (at most 0.1 s), so that under load versions are fewer and bigger (less CPU"
        " per order; K=1 raised the p99 at 1,000 orders/s: docs/benchmarks.md; default"
        " %(default)s; 0: at once)",
    )
    parser.add_argument(
        "--give-up-after",
        type=_at_least_zero(float),
        default=0.0,
        metavar="S",
        help="exit (status 1) once storing versions in the DHT has failed for S seconds, "
        "so that a standby with other grapes takes over (default 0: retry for ever)",
    )


def _ttl(text: str) -> float:
    value = float(text)
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"not 0.5..600 seconds: {text}")
    return value


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
    stops=(
        (GaveUp, EXIT_FAILED),
        (Deposed, EXIT_FAILED),
        (StorageUnavailable, EXIT_UNREACHABLE),  # NATS unreachable at start
        (ArgumentError, EXIT_USAGE),
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Run the process_order worker with `argv` (default: the process's); exit status."""
    return run_worker_program(_PROGRAM, sys.argv[1:] if argv is None else argv)
