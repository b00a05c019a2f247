"""The `dex` command: the operator's tool, git-style subcommands.

Network commands take ``-g/--grape URL`` (default ``http://127.0.0.1:30001``, as the
Grenache CLI tools; several grapes as ``-g URL1,URL2`` or a repeated ``-g``: the command
goes on through another when one does not answer) and ``--timeout SECONDS``; journal
commands take ``--db PATH`` (default: the sequencer's own, ``data/submit_journal.db``).
``--json`` prints JSON instead of text wherever it is offered. Every subcommand and exit
status is in docs/operations.md ("dex").

Exit status: 0 success; 1 a check failed or nothing was found (demo, lookup, get, a
peer's error reply, an unknown order); 2 bad arguments (a malformed grape URL too) or an
unreadable journal; 3 the grape or the services could not be reached; 130 interrupted;
141 the output pipe closed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from exchange.protocol import DEFAULT_MARKET
from exchange.runtime import (
    DEFAULT_GRAPE,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
)
from exchange.runtime import grape_urls as _grape_urls
from exchange.runtime import join_grape_urls as _join_grape_urls
from exchange.runtime import positive as _positive
from exchange.runtime import tcp_port as _port

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from exchange.sequencer import DEFAULT_JOURNAL

    parser = argparse.ArgumentParser(
        prog="dex",
        description="The operator's tool of the distributed exchange.",
        epilog="Exit status: 0 ok, 1 failed or not found (dex order: unknown order), "
        "2 bad arguments or journal, "
        "3 unreachable, 130 interrupted, 141 output closed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument(
        "-g",
        "--grape",
        type=_grape_urls,
        action="append",
        default=[],
        metavar="URL",
        help=f"default {DEFAULT_GRAPE}; several: repeat -g, or URL1,URL2",
    )
    net.add_argument(
        "--timeout", type=_positive(float), default=5.0, metavar="S", help="default 5 s"
    )
    market_help = (
        f"the market (default {DEFAULT_MARKET}); its services are the names with :SYMBOL "
        "appended, its journal data/submit_journal-SYMBOL.db"
    )
    net.add_argument("--market", type=_market, default=DEFAULT_MARKET, help=market_help)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db", metavar="PATH", help=f"default {DEFAULT_JOURNAL} (another market's: see --market)"
    )
    db.add_argument("--market", type=_market, default=DEFAULT_MARKET, help=market_help)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser(
        "head",
        parents=[net, as_json],
        help="the matcher's latest version (seq, root hash, book hash), verified",
    )
    book = commands.add_parser(
        "book",
        parents=[net, as_json],
        help="the current book from the DHT, verified, as a ladder",
    )
    book.add_argument("--depth", type=_positive(int), default=10, help="levels a side (10)")
    book.add_argument("--root", metavar="HASH", help="this version instead of the head's")
    watch = commands.add_parser(
        "watch", parents=[net], help="the live market view (a client that submits nothing)"
    )
    watch.add_argument("--once", action="store_true", help="exit once caught up with the head")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--plain", action="store_true", help="text lines even on a terminal")
    watch.add_argument(
        "--metrics-port",
        type=_port,
        metavar="N",
        help="serve the replica's seq, head and lag for Prometheus on 127.0.0.1:N",
    )

    journal = commands.add_parser(
        "journal", parents=[db, as_json], help="the sequencer's journal, newest last"
    )
    journal.add_argument("--tail", type=int, default=20, metavar="N", help="last N (20)")
    journal.add_argument("--follow", "-f", action="store_true", help="then print new entries")
    journal.add_argument("--order", metavar="ID", help="only this orderId")
    journal.add_argument("--client", metavar="ID", help="only this clientId")
    journal.add_argument(
        "--no-replay",
        action="store_true",
        help="do not replay the journal to mark the entries the matcher rejected",
    )
    _journal_move_parsers(journal)
    status = commands.add_parser(
        "status",
        parents=[net, as_json],
        help="workers announced and answering, heads, backlog, orders/s",
    )
    status.add_argument("--db", metavar="PATH", help="the journal, if readable here")
    commands.add_parser(
        "markets",
        parents=[net, as_json],
        help="every market in the network (a map over `markets`), with its verified head",
    )

    _order_parsers(commands, net, as_json)

    lookup = commands.add_parser(
        "lookup", parents=[net, as_json], help="the peers announced for a name"
    )
    lookup.add_argument("name")
    request = commands.add_parser(
        "request", parents=[net], help="send one request to a peer of a name; print the reply"
    )
    request.add_argument("name")
    request.add_argument("payload", metavar="JSON")
    get = commands.add_parser("get", parents=[net], help="read one DHT item by its key")
    get.add_argument("key")

    replay = commands.add_parser(
        "replay",
        parents=[db, as_json],
        help="recompute the book from the journal alone",
        description="Apply every journal entry in seq order through the core; print the "
        "seq reached, the book hash, the book and the last trades.",
    )
    replay.add_argument("--upto", type=int, metavar="SEQ", help="stop after this seq")
    replay.add_argument("--depth", type=_positive(int), default=10, help="levels a side (10)")
    replay.add_argument("--trades", type=int, default=10, metavar="N", help="last N trades (10)")
    from exchange.tools._snapshot import add_parser as add_snapshot_parser

    add_snapshot_parser(commands, as_json)
    demo = commands.add_parser(
        "demo",
        parents=[as_json],
        help="run the whole exchange in one process (memory transport)",
        description="Both workers and several clients on the memory transport; checks "
        "that every replica holds the replay's book hash.",
    )
    demo.add_argument("--clients", type=int, default=4, help="number of clients (2-26)")
    demo.add_argument(
        "--orders", type=int, default=24, help="number of orders (per market with --markets)"
    )
    demo.add_argument(
        "--markets",
        type=int,
        default=1,
        metavar="N",
        help="run N markets at once (1-26; default 1, the default market): MKT1..MKTn, each "
        "with its own workers, --clients clients and --orders orders, checked against its "
        "own replay; then a total line",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the order generator")
    demo.add_argument(
        "--timeout", type=_positive(float), default=20.0, metavar="S", help="bound (20 s)"
    )
    return parser


def _journal_move_parsers(journal: argparse.ArgumentParser) -> None:
    """`dex journal export` and `dex journal import`: a journal moved between stores."""
    moves = journal.add_subparsers(dest="action", metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--journal",
        metavar="LOCATION",
        help="sqlite:PATH or nats://HOST:PORT[,...] (default: sqlite: of --db)",
    )
    where.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help="as `journal`")
    export = moves.add_parser(
        "export",
        parents=[where],
        help="write the journal as JSON lines (keys, requestIds, a checked trailer)",
    )
    export.add_argument("-o", "--out", metavar="FILE", help="default: standard output")
    load = moves.add_parser(
        "import",
        parents=[where],
        help="append an export to an empty journal (or finish an interrupted import)",
    )
    load.add_argument("file", metavar="FILE", help="the export, or - for standard input")


def _order_parsers(
    commands: Any, net: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """`order`, `orders`, `fills`: from the network, or from the journal with --db."""
    from exchange.tools._orders import DEFAULT_VERSIONS

    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("client_id", metavar="CLIENT")
    source.add_argument(
        "--db", metavar="PATH", help="replay this journal instead of reading the network"
    )
    walk = argparse.ArgumentParser(add_help=False)
    walk.add_argument(
        "--versions",
        type=int,
        default=DEFAULT_VERSIONS,
        metavar="N",
        help=f"on the network: versions walked back for the history ({DEFAULT_VERSIONS})",
    )
    order = commands.add_parser(
        "order",
        parents=[source, net, walk, as_json],
        help="one order's state: resting, filled, cancelled, rejected or unknown",
        description="What became of one order: resting (with what is left), filled, "
        "cancelled (by whom), rejected (why), or unknown. Exit 0 known, 1 unknown.",
    )
    order.add_argument("order_id", metavar="ORDER")
    commands.add_parser(
        "orders",
        parents=[source, net, as_json],
        help="a client's open (resting) orders",
    )
    fills = commands.add_parser(
        "fills", parents=[source, net, walk, as_json], help="a client's trades, oldest first"
    )
    fills.add_argument("--tail", type=int, default=50, metavar="N", help="last N (50)")


def _market(text: str) -> str:
    from orderbook_core import check_market

    try:
        return check_market(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    if args.command in ("order", "orders", "fills"):
        from exchange.tools import _orders

        return int(getattr(_orders, args.command)(args))
    if args.command == "snapshot":
        from exchange.tools._snapshot import snapshot

        return snapshot(args)
    if args.command in ("replay", "journal", "demo"):
        from exchange.tools import _local

        return int(getattr(_local, args.command)(args))
    from exchange.tools import _remote

    return int(getattr(_remote, args.command)(args))


def main(argv: list[str] | None = None) -> int:
    """Run `dex` with `argv` (default: the process's arguments); return the exit status."""
    args = _parser().parse_args(argv)
    if isinstance(getattr(args, "market", None), str):
        from exchange.runtime import market_path
        from exchange.sequencer import DEFAULT_JOURNAL
        from orderbook_core import MarketSpec

        args.spec = MarketSpec(market=args.market)
        if args.command in ("journal", "replay", "status") and getattr(args, "db", "") is None:
            args.db = market_path(DEFAULT_JOURNAL, args.market)
    if isinstance(getattr(args, "grape", None), list):  # the network commands
        args.grapes = _join_grape_urls(args.grape) or [DEFAULT_GRAPE]
        args.grape = ",".join(args.grapes)  # what messages name
    try:
        return _run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _broken_pipe()
    except BaseExceptionGroup as group:
        if group.subgroup(BrokenPipeError) is not None:
            return _broken_pipe()
        raise


def _broken_pipe() -> int:
    """The reader of our output went away (`dex demo | head -3`): end quietly, as a
    shell tool killed by SIGPIPE would, and keep Python from failing again at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
