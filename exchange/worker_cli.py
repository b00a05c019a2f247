"""The two workers' command lines: `bin/submitOrderWorker.py` and `bin/processOrderWorker.py`.

Both take the same shape of arguments (the challenge's `grape=URL`, or `--grape`, plus
`--db` and `--port`), log to stderr, stop cleanly on SIGINT/SIGTERM and exit 1 with a
short message when the grape cannot be used. Only what they build differs, so each is a
`_Worker` description run by one `_main`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import anyio

from exchange.journal import Journal
from exchange.process_worker import ProcessWorker
from exchange.submit_worker import SubmitWorker
from transports import Transport, TransportError, open_transport

__all__ = ["process_main", "submit_main"]

Runner = Callable[..., Coroutine[Any, Any, None]]
"""A worker's `run(*, task_status)`: serves until cancelled, reports its port."""


@dataclass(frozen=True)
class _Worker:
    name: str
    prog: str
    description: str
    default_grape: str
    default_db: str
    db_help: str
    port_help: str
    build: Callable[[argparse.Namespace, ExitStack], Callable[[Transport], Runner]]
    """Opens the worker's files (synchronously, before the event loop starts) and
    returns how to make its `run` once the transport is open."""


def _build_submit(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    journal = stack.enter_context(Journal(args.db))
    return lambda transport: SubmitWorker(transport, journal, port=args.port).run


def _build_process(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    return lambda transport: ProcessWorker(transport, args.db, port=args.port).run


_SUBMIT = _Worker(
    name="submit_order",
    prog="submitOrderWorker.py",
    description="Serve submit_order: validate, sequence and journal orders, then "
    "forward them in order to process_order.",
    default_grape="http://127.0.0.1:30001",
    default_db="data/submit_journal.db",
    db_help="SQLite journal",
    port_help="port to serve on (default: a free one)",
    build=_build_submit,
)

_PROCESS = _Worker(
    name="process_order",
    prog="processOrderWorker.py",
    description="Serve process_order and orderbook_head: apply sequenced orders, "
    "publish each version of the book to the DHT, broadcast orderbook_updated.",
    default_grape="http://127.0.0.1:40001",
    default_db="data/process_state.db",
    db_help="SQLite state",
    port_help="port to serve on (default: a free one). Give a fixed port in production: "
    "grapes keep a dead worker's address announced, and a restarted worker on the "
    "same port takes it over",
    build=_build_process,
)


def _parse_args(worker: _Worker, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=worker.prog, description=worker.description)
    parser.add_argument(
        "settings",
        nargs="*",
        metavar="grape=URL",
        help=f"the grape to announce through (default {worker.default_grape}); same as --grape",
    )
    parser.add_argument("--grape", help="the grape's HTTP API URL")
    parser.add_argument(
        "--db", default=worker.default_db, help=f"{worker.db_help} (default {worker.default_db})"
    )
    parser.add_argument("--port", type=int, default=0, help=worker.port_help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if key != "grape" or not sep or not value:
            parser.error(f"unknown setting {setting!r}; expected grape=URL")
        args.grape = value
    args.grape = args.grape or worker.default_grape
    return args


async def _serve(
    worker: _Worker, args: argparse.Namespace, make_run: Callable[[Transport], Runner]
) -> None:
    async with (
        open_transport("grenache", grape=args.grape) as transport,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        port = await tg.start(make_run(transport))
        logging.info("%s worker ready on port %d via %s", worker.name, port, args.grape)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logging.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _main(worker: _Worker, argv: list[str]) -> int:
    args = _parse_args(worker, argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    status = 0
    try:
        with ExitStack() as stack:
            anyio.run(_serve, worker, args, worker.build(args, stack))
    except* TransportError as group:
        logging.error("stopped: %s", "; ".join(str(exc) for exc in _leaves(group)))
        status = 1
    return status


def _leaves(group: BaseExceptionGroup[TransportError]) -> list[BaseException]:
    """The errors themselves, out of task groups nested in task groups."""
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def submit_main(argv: list[str]) -> int:
    """Run the submit_order worker with command-line `argv`; returns the exit status."""
    return _main(_SUBMIT, argv)


def process_main(argv: list[str]) -> int:
    """Run the process_order worker with command-line `argv`; returns the exit status."""
    return _main(_PROCESS, argv)
