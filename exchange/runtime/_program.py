"""How a worker runs as a command-line program: arguments, logging, signals, exit status.

Both workers (`bin/submitOrderWorker.py`, `bin/processOrderWorker.py`) take the same
shape of arguments (the challenge's `grape=URL`, or `--grape`, plus `--db`, `--port`
and `--metrics-port`; several grapes as ``grape=URL1,URL2`` or a repeated `--grape`:
the names are announced through every one, and the worker goes on through another when
one stops answering), log to stderr, stop cleanly on SIGINT/SIGTERM and exit 1 with a
short message when the grape cannot be used. Only what they build differs: each role
describes itself with a `WorkerProgram` (`exchange.sequencer._program`,
`exchange.matcher._program`) and runs it with `run_worker_program`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from exchange.protocol import DEFAULT_MARKET, DatabaseInUse, public_key_hex
from exchange.runtime._cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    check_grape_urls,
    grape_urls,
    join_grape_urls,
)
from exchange.runtime._exporter import serve_prometheus
from exchange.runtime._keys import load_or_create_key
from exchange.runtime._metrics import NO_METRICS, Metrics, Role
from orderbook_core import check_market
from transports import Transport, TransportError, open_transport

__all__ = ["Runner", "WorkerProgram", "market_path", "run_worker_program"]

Runner = Callable[..., Coroutine[Any, Any, None]]
"""A worker's `run(*, task_status)`: serves until cancelled, reports its port."""


@dataclass(frozen=True)
class WorkerProgram:
    """What one worker's command line needs to know about the worker."""

    name: str
    role: Role
    """Which metrics `--metrics-port` exports (docs/operations.md, "Metrics")."""
    prog: str
    description: str
    default_grape: str
    default_db: str
    db_help: str
    port_help: str
    build: Callable[[argparse.Namespace, ExitStack], Callable[[Transport], Runner]]
    """Opens the worker's files (synchronously, before the event loop starts) and
    returns how to make its `run` once the transport is open. `args.metrics` is the
    `Metrics` to give the worker (`NO_METRICS` without `--metrics-port`); `args.key` is
    its signing key (`--key-file`, made on first start)."""
    key_name: str
    """The key file's name beside the database (``<db dir>/<key_name>.key``)."""
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda _parser: None
    """Adds the role's own flags."""
    stops: tuple[tuple[type[Exception], int], ...] = ()
    """The role's own errors that end it with one log line, and the exit status of each
    (the first that matches), whether raised by `build` or while serving."""


def _parse_args(worker: WorkerProgram, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=worker.prog, description=worker.description)
    parser.add_argument(
        "settings",
        nargs="*",
        metavar="grape=URL",
        help=f"the grape to announce through (default {worker.default_grape}); same as"
        " --grape; several: grape=URL1,URL2 (the local grape first)",
    )
    parser.add_argument(
        "--grape",
        type=grape_urls,
        action="append",
        default=[],
        metavar="URL",
        help="a grape's HTTP API URL (or URL1,URL2); repeat for several grapes: the worker"
        " announces through all and goes on through another when one stops answering",
    )
    parser.add_argument(
        "--market",
        type=_market,
        default=DEFAULT_MARKET,
        metavar="SYMBOL",
        help=f"the market to serve (default {DEFAULT_MARKET}, under the seed's names; "
        "another market X serves the names with :X appended, and its default files have "
        "X in their names)",
    )
    parser.add_argument(
        "--db",
        help=f"{worker.db_help} (default {worker.default_db}; "
        f"{market_path(worker.default_db, 'X')} for market X)",
    )
    parser.add_argument("--port", type=int, default=0, help=worker.port_help)
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="N",
        help="serve Prometheus metrics on http://127.0.0.1:N/metrics (0: a free port; "
        "default: none; needs the metrics extra)",
    )
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        help=f"this worker's Ed25519 key, made on first start (mode 0600), its public key "
        f"beside it in .pub (default: {worker.key_name}.key beside --db; "
        f"{worker.key_name}-X.key for market X)",
    )
    worker.add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    groups: list[list[str]] = []
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if key != "grape" or not sep or not value:
            parser.error(f"unknown setting {setting!r}; expected grape=URL")
        try:
            groups.append(check_grape_urls(value))
        except ValueError as exc:
            parser.error(f"grape={value}: not a grape URL ({exc})")
    args.grapes = join_grape_urls(groups + args.grape) or [worker.default_grape]
    args.grape = ",".join(args.grapes)
    args.db = args.db or market_path(worker.default_db, args.market)
    key_name = market_path(f"{worker.key_name}.key", args.market)  # a key per market
    args.key_file = args.key_file or str(Path(args.db).parent / key_name)
    return args


def market_path(path: str, market: str) -> str:
    """A default data file of `market`: `path` itself for the default market, else with
    ``-<market>`` before its suffix (``data/submit_journal-ETH-USD.db``), so two markets
    on one machine never share a file."""
    if market == DEFAULT_MARKET:
        return path
    where = Path(path)
    return str(where.with_name(f"{where.stem}-{market}{where.suffix}"))


def _market(text: str) -> str:
    try:
        return check_market(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {port}")
    return port


def _open_metrics(worker: WorkerProgram, args: argparse.Namespace, stack: ExitStack) -> Metrics:
    """The worker's observer: Prometheus on `--metrics-port` (until `stack` closes), or
    none. prometheus-client is imported only here, and only with the flag."""
    if args.metrics_port is None:
        return NO_METRICS
    metrics, port = stack.enter_context(serve_prometheus(args.metrics_port, worker.role))
    logging.info("%s metrics on http://127.0.0.1:%d/metrics", worker.name, port)
    return metrics


async def _serve(
    worker: WorkerProgram, args: argparse.Namespace, make_run: Callable[[Transport], Runner]
) -> None:
    async with (
        open_transport("grenache", grape=args.grapes) as transport,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        port = await tg.start(make_run(transport))
        market = "" if args.market == DEFAULT_MARKET else f" (market {args.market})"
        logging.info("%s worker ready on port %d via %s%s", worker.name, port, args.grape, market)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logging.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _main(worker: WorkerProgram, argv: list[str]) -> int:
    args = _parse_args(worker, argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    status = EXIT_OK
    with ExitStack() as stack:
        try:
            args.metrics = _open_metrics(worker, args, stack)
        except (ImportError, OSError) as exc:
            logging.error("--metrics-port %d: %s", args.metrics_port, exc)
            return EXIT_USAGE
        try:
            args.key = load_or_create_key(args.key_file)
        except OSError as exc:
            logging.error("--key-file: %s", exc)
            return EXIT_USAGE
        logging.info("%s key %s (public %s)", worker.name, args.key_file, public_key_hex(args.key))
        stops = tuple(kind for kind, _status in worker.stops)
        try:
            anyio.run(_serve, worker, args, worker.build(args, stack))
        except* (TransportError, DatabaseInUse) as group:
            logging.error("stopped: %s", "; ".join(str(exc) for exc in _leaves(group)))
            status = EXIT_FAILED
        except* stops as group:
            leaves = _leaves(group)
            logging.error("stopped: %s", "; ".join(str(exc) for exc in leaves))
            status = next(code for kind, code in worker.stops if isinstance(leaves[0], kind))
    return status


def _leaves(group: BaseExceptionGroup[Exception]) -> list[BaseException]:
    """The errors themselves, out of task groups nested in task groups."""
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def run_worker_program(worker: WorkerProgram, argv: list[str]) -> int:
    """Run `worker` with command-line `argv`; return the exit status (0; 1 on a
    transport failure such as an unreachable grape; 2 when `--metrics-port` cannot be
    served, prometheus-client missing or the port taken, or the key file is unusable)."""
    return _main(worker, argv)
