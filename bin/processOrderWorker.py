"""The process_order worker: `python bin/processOrderWorker.py grape=http://127.0.0.1:40001`.

Run it with the project's interpreter (`.venv/bin/python bin/processOrderWorker.py ...`,
after `make setup`). It applies the sequenced commands through the matching core, stores
each version of the book in the DHT, announces `process_order` and `orderbook_head`, and
tells every client `orderbook_updated`. Its state (`--db`) survives restarts. See
`--help`, and the module docstring of `exchange.process_worker`.

Thin on purpose: parse the arguments, build the objects, run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

try:
    import exchange  # noqa: F401  (installed by `make setup`, editable)
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from exchange.process_worker import ProcessWorker
from transports import TransportError, open_transport

DEFAULT_GRAPE = "http://127.0.0.1:40001"
DEFAULT_DB = "data/process_state.db"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="processOrderWorker.py",
        description="Serve process_order and orderbook_head: apply sequenced orders, "
        "publish each version of the book to the DHT, broadcast orderbook_updated.",
    )
    parser.add_argument(
        "settings",
        nargs="*",
        metavar="grape=URL",
        help=f"the grape to announce through (default {DEFAULT_GRAPE}); same as --grape",
    )
    parser.add_argument("--grape", help="the grape's HTTP API URL")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite state (default {DEFAULT_DB})")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port to serve on (default: a free one). Give a fixed port in production: "
        "grapes keep a dead worker's address announced, and a restarted worker on the "
        "same port takes it over",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if key != "grape" or not sep or not value:
            parser.error(f"unknown setting {setting!r}; expected grape=URL")
        args.grape = value
    args.grape = args.grape or DEFAULT_GRAPE
    return args


async def serve(args: argparse.Namespace) -> None:
    async with (
        open_transport("grenache", grape=args.grape) as transport,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        port = await tg.start(ProcessWorker(transport, args.db, port=args.port).run)
        logging.info("process_order worker ready on port %d via %s", port, args.grape)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logging.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    status = 0
    try:
        anyio.run(serve, args)
    except* TransportError as group:
        logging.error("stopped: %s", "; ".join(str(exc) for exc in group.exceptions))
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
