"""`dex snapshot`: the matcher's snapshots, listed, or one checked against a replay.

A snapshot is only a shortcut through the matcher's applied log (`exchange.matcher`), so
the check is the replay it stands for: the commands ``1..SEQ`` of the applied log (or,
with ``--journal``, of the sequencer's journal) applied through the core from an empty
book must give exactly the snapshot's book (byte for byte, the core's encoding); against
the applied log, the snapshot's root must also be the one recorded at SEQ. Files are
only read: it is safe beside a running matcher.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from typing import Any

from exchange.matcher import DEFAULT_STATE, AppliedLog, SnapshotError, SnapshotStore, snapshot_dir
from exchange.protocol import ReplayError, apply_entry
from exchange.runtime import EXIT_FAILED, EXIT_OK, EXIT_USAGE, market_path, print_json
from exchange.tools._replay import replay_journal
from exchange.versions import book_hash
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook, check_market, encode_book

__all__ = ["add_parser", "snapshot"]


def add_parser(commands: Any, as_json: argparse.ArgumentParser) -> None:
    """Register `dex snapshot` (a few lines in `_dex`, the rest here)."""
    parser = commands.add_parser(
        "snapshot",
        parents=[as_json],
        help="the matcher's snapshots; --check SEQ verifies one against a replay",
        description="List the matcher's snapshots (<db>.snapshots/), each checked (hash, "
        "format, market); exit 1 if one is unusable. With --check SEQ, replay commands "
        "1..SEQ and compare the book with snapshot SEQ; exit 1 on a mismatch.",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help=f"the matcher's SQLite state (default {DEFAULT_STATE}; with --market X: "
        f"{market_path(DEFAULT_STATE, 'X')})",
    )
    parser.add_argument(
        "--market",
        type=_market,
        metavar="SYMBOL",
        help="the matcher's market (default BTC-USD; its default --db is "
        "data/process_state-SYMBOL.db)",
    )
    parser.add_argument("--check", type=int, metavar="SEQ", help="verify snapshot SEQ")
    parser.add_argument(
        "--journal",
        metavar="PATH",
        help="with --check: replay the sequencer's journal instead of the matcher's applied log",
    )


def snapshot(args: argparse.Namespace) -> int:
    """Run `dex snapshot`; the exit status."""
    spec = MarketSpec(market=args.market or DEFAULT_SPEC.market)
    if args.db is None:
        args.db = market_path(DEFAULT_STATE, spec.market)
    store = SnapshotStore(snapshot_dir(args.db), spec)
    if args.check is not None:
        return _check(args, store, args.check)
    if args.journal is not None:
        print("dex snapshot: --journal goes with --check", file=sys.stderr)
        return EXIT_USAGE
    infos = store.infos()
    if args.json:
        print_json(
            [
                {"seq": i.seq, "path": str(i.path), "size": i.size, "root": i.root,
                 "orders": i.orders, "ok": i.error is None, "error": i.error}
                for i in infos
            ]
        )  # fmt: skip
    elif not infos:
        print(f"no snapshots in {store.directory}")
    else:
        print(f"{'SEQ':>12}  {'ORDERS':>8}  {'BYTES':>10}  ROOT")
        for i in infos:
            what = i.root if i.error is None else f"UNUSABLE: {i.error}"
            orders = "-" if i.orders is None else str(i.orders)
            print(f"{i.seq:>12}  {orders:>8}  {i.size:>10}  {what}")
    return EXIT_FAILED if any(i.error is not None for i in infos) else EXIT_OK


def _check(args: argparse.Namespace, store: SnapshotStore, seq: int) -> int:
    try:
        taken = store.load(seq)
    except SnapshotError as exc:
        return _report(args, seq, False, str(exc))
    recorded: str | None = None
    try:
        if args.journal is not None:
            book = replay_journal(args.journal, store.spec, upto=seq).book
            source = f"the journal {args.journal}"
        else:
            book, recorded = _replay_applied(args.db, seq, store.spec)
            source = f"the applied log {args.db}"
    except (ReplayError, sqlite3.Error) as exc:
        print(f"dex snapshot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if recorded is not None and recorded != taken.root:
        return _report(args, seq, False, f"root {taken.root}, but {recorded} is recorded")
    if encode_book(book) != encode_book(taken.book):
        return _report(
            args,
            seq,
            False,
            f"book {book_hash(taken.book)}, but the replay of {source} gives {book_hash(book)}",
        )
    return _report(
        args, seq, True, f"book {book_hash(book)} ({len(book)} orders) = the replay of {source}"
    )


def _replay_applied(db: str, seq: int, spec: MarketSpec) -> tuple[OrderBook, str]:
    """The book after the applied log's commands 1..`seq`, and the root recorded at `seq`.

    Raises:
        ReplayError: the log ends before `seq` or has a gap; sqlite3.Error: unreadable.
    """
    book = OrderBook(spec)
    log = AppliedLog(db, spec, read_only=True)
    try:
        at, root = 0, ""
        for record in log.entries():
            if record.entry.seq > seq:
                break
            if record.entry.seq != at + 1:
                raise ReplayError(f"gap in the applied log: seq {record.entry.seq} after {at}")
            apply_entry(book, record.entry)
            at, root = record.entry.seq, record.root
    finally:
        log.close()
    if at != seq:
        raise ReplayError(f"the applied log ends at seq {at}, before {seq}")
    return book, root


def _report(args: argparse.Namespace, seq: int, ok: bool, detail: str) -> int:
    if args.json:
        print_json({"seq": seq, "ok": ok, "detail": detail})
    else:
        print(f"snapshot {seq}: {'OK' if ok else 'MISMATCH'}: {detail}")
    return EXIT_OK if ok else EXIT_FAILED


def _market(text: str) -> str:
    try:
        return check_market(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
