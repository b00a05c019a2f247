"""The `dex` commands that read local files only: `replay`, `journal`, and `demo`.

Each takes the parsed arguments and returns the exit status; see `exchange.tools._dex`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from exchange.client.view import ladder_lines, ladder_of
from exchange.protocol import ReplayError
from exchange.runtime import EXIT_OK, EXIT_USAGE, print_json
from exchange.tools._journal_view import (
    JOURNAL_HEADER,
    entry_line,
    entry_record,
    follow_entries,
    open_journal,
    select_entries,
)
from exchange.tools._outcomes import Outcomes
from exchange.tools._replay import replay_journal
from exchange.tools._trades import trade_line, trade_record
from orderbook_core import DEFAULT_SPEC

__all__ = ["demo", "journal", "replay"]

_PROGRESS_FROM = 20_000
"""Replays of at least this many entries show a progress bar (on a terminal)."""


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr, or nothing (not a terminal, or no rich)."""
    from exchange.client.view import rich_available

    if not (enabled and sys.stderr.isatty() and rich_available()):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("replaying", total=None)

        def update(seq: int, upto: int) -> None:
            bar.update(task, completed=seq, total=upto)

        yield update


def replay(args: argparse.Namespace) -> int:
    spec = getattr(args, "spec", DEFAULT_SPEC)
    if args.upto is not None and args.upto < 0:
        print("dex replay: --upto must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        with open_journal(args.db) as journal:
            size = journal.head() if args.upto is None else args.upto
        with _progress(size >= _PROGRESS_FROM) as progress:
            result = replay_journal(args.db, spec, upto=args.upto, progress=progress)
    except ReplayError as exc:
        print(f"dex replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    ladder = ladder_of(result.book, spec, args.depth)
    shown = max(args.trades, 0)
    last = [trade_record(t, spec) for t in result.trades[len(result.trades) - shown :]]
    if shown == 0:
        last = []
    if args.json:
        print_json(
            {
                "seq": result.seq,
                "book": result.book_hash,
                "orders": len(result.book),
                "trades": len(result.trades),
                **ladder.to_json(),
                "lastTrades": last,
            }
        )
        return EXIT_OK
    print(f"seq {result.seq}")
    print(f"book {result.book_hash or 'empty'}")
    print(f"resting orders {len(result.book)}, trades {len(result.trades)}")
    print()
    for line in ladder_lines(ladder):
        print(line)
    if last:
        print()
        print(f"last {len(last)} of {len(result.trades)} trades:")
        for record in last:
            print(trade_line(record))
    return EXIT_OK


def journal(args: argparse.Namespace) -> int:
    if args.action is not None:
        from exchange.tools._journal_move import move

        return move(args)
    try:
        opened = open_journal(args.db)
    except ReplayError as exc:
        print(f"dex journal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outcomes = Outcomes()
    with opened as journal:
        entries = select_entries(
            journal, tail=max(args.tail, 0), order=args.order, client=args.client
        )
        if not args.json:
            print(JOURNAL_HEADER, flush=True)
        last = entries[-1].seq if entries else 0
        if not args.no_replay:
            outcomes.advance(journal, last)
            _warn_broken(outcomes)
        for entry in entries:
            _print_entry(entry, args.json, outcomes.reason(entry.seq))
        if not args.follow:
            return EXIT_OK
        if not entries:
            from exchange.tools._journal_view import file_head

            last = file_head(journal)
        for entry in follow_entries(journal, last, order=args.order, client=args.client):
            if not args.no_replay:
                outcomes.advance(journal, entry.seq)
                _warn_broken(outcomes)
            _print_entry(entry, args.json, outcomes.reason(entry.seq))
    return EXIT_OK  # pragma: no cover - --follow ends by Ctrl-C or a closed pipe


def _warn_broken(outcomes: Outcomes) -> None:
    if outcomes.broken:
        print(f"dex journal: rejections not shown past seq {outcomes.seq}: {outcomes.broken}",
              file=sys.stderr)  # fmt: skip
        outcomes.broken = ""  # said once; stays "stopped"


def _print_entry(entry: Any, as_json: bool, rejected: str | None = None) -> None:
    if as_json:
        print_json(entry_record(entry, rejected))
    else:
        print(entry_line(entry, rejected), flush=True)


def demo(args: argparse.Namespace) -> int:
    from exchange.tools._demo import run_demo

    if not 2 <= args.clients <= 26 or args.orders < 1 or not 1 <= args.markets <= 26:
        print("dex demo: --clients must be 2-26, --orders >= 1 and --markets 1-26", file=sys.stderr)
        return EXIT_USAGE
    return run_demo(
        clients=args.clients,
        orders=args.orders,
        seed=args.seed,
        as_json=args.json,
        timeout=args.timeout,
        markets=args.markets,
    )
