"""The `dex` command: `dex replay --db PATH` and `dex demo`.

`dex replay` recomputes the book hash from a submit worker's journal with the core
alone (`exchange.tools.replay_journal`): compare it with the ``book`` a client prints in its
``done`` line (same ``seq``) to check a replica. `dex demo` runs the whole exchange in
one process on the memory transport (`exchange.tools.run_demo`).

Exit status: 0 success, 1 a check failed (demo), 2 bad arguments or unreadable journal.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dex", description="Tools of the distributed exchange.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay = commands.add_parser(
        "replay",
        help="recompute the book hash from a submit worker's journal",
        description="Apply every journal entry in seq order through the core and print "
        "the book hash and the seq reached.",
    )
    replay.add_argument("--db", required=True, metavar="PATH", help="the journal (SQLite)")
    replay.add_argument("--upto", type=int, metavar="SEQ", help="stop after this seq")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    demo = commands.add_parser(
        "demo",
        help="run the whole exchange in one process (memory transport)",
        description="Both workers and several clients on the memory transport; checks "
        "that every replica holds the replay's book hash.",
    )
    demo.add_argument("--clients", type=int, default=4, help="number of clients (2-26)")
    demo.add_argument("--orders", type=int, default=24, help="number of orders")
    demo.add_argument("--seed", type=int, default=7, help="seed of the order generator")
    demo.add_argument("--json", action="store_true", help="print one JSON object per line")
    return parser


def _replay(args: argparse.Namespace) -> int:
    from exchange.protocol import ReplayError
    from exchange.tools._replay import replay_journal

    if args.upto is not None and args.upto < 0:
        print("dex replay: --upto must be >= 0", file=sys.stderr)
        return 2
    try:
        result = replay_journal(args.db, upto=args.upto)
    except ReplayError as exc:
        print(f"dex replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "seq": result.seq,
                    "book": result.book_hash,
                    "orders": len(result.book),
                    "trades": len(result.trades),
                }
            )
        )
    else:
        print(f"seq {result.seq}")
        print(f"book {result.book_hash or 'empty'}")
        print(f"resting orders {len(result.book)}, trades {len(result.trades)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from exchange.tools._demo import run_demo

    if not 2 <= args.clients <= 26 or args.orders < 1:
        print("dex demo: --clients must be 2-26 and --orders >= 1", file=sys.stderr)
        return 2
    return run_demo(clients=args.clients, orders=args.orders, seed=args.seed, as_json=args.json)


def main(argv: list[str] | None = None) -> int:
    """Run `dex` with `argv` (default: the process's arguments); return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _replay(args)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
