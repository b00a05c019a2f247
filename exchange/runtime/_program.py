"""How a worker runs as a command-line program: arguments, logging, signals, exit status.

Both workers (`bin/submitOrderWorker.py`, `bin/processOrderWorker.py`) take the same
shape of arguments (the challenge's `grape=URL`, or `--grape`, plus `--db`, `--port`
and `--metrics-port`; several grapes as ``grape=URL1,URL2`` or a repeated `--grape`:
the names are announced through every one, and the worker goes on through another when
one stops answering), log to stderr, stop cleanly on SIGINT/SIGTERM and exit 1 with a
short message when the grape cannot be used. Only what they build differs: each role
describes itself with a `WorkerProgram` (`exchange.sequencer._program`,
`exchange.matcher._program`) and runs it with `run_worker_program`.

One process may serve several markets (`--market A --market B`, or ``market=A,B``):
each is built and run as if it were alone (its own files, port, transport, task group
and announce loop), so one market's failure or stall never reaches another's tasks; a
market that fails stops alone (docs/operations.md, "Several markets in one process").
"""

from __future__ import annotations

import argparse
import contextvars
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
    returns how to make its `run` once the transport is open. Called once per market
    with that market's arguments (`args.market`, its `db`, `port`, ...; `args.several`
    when the process serves several) and a stack closed when that market stops.
    `args.metrics` is the `Metrics` to give the worker (`NO_METRICS` without
    `--metrics-port`); `args.key` is its signing key (`--key-file`, made on first
    start)."""
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
        " --grape; several: grape=URL1,URL2 (the local grape first). market=A[,B...]: "
        "the markets to serve, as --market",
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
        action="append",
        default=[],
        metavar="SYMBOL",
        help=f"the market to serve (default {DEFAULT_MARKET}, under the seed's names; "
        "another market X serves the names with :X appended, and its default files have "
        "X in their names); repeat (or market=A,B) to serve several markets in this "
        "process, each with its own files, port and tasks",
    )
    parser.add_argument(
        "--db",
        help=f"{worker.db_help} (default {worker.default_db}; "
        f"{market_path(worker.default_db, 'X')} for market X; with several markets, each "
        "market's name is put in it the same way)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help=f"{worker.port_help}; with several markets, N for the first, N+1 for the "
        "second, and so on",
    )
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
        f"{worker.key_name}-X.key for market X; with several markets, each market's name "
        "is put in it)",
    )
    worker.add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_intermixed_args(argv)  # grape=, market= anywhere
    groups: list[list[str]] = []
    markets: list[str] = []
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if key not in ("grape", "market") or not sep or not value:
            parser.error(f"unknown setting {setting!r}; expected grape=URL or market=SYMBOL")
        try:
            if key == "market":
                markets.extend(check_market(m) for m in value.split(","))
            else:
                groups.append(check_grape_urls(value))
        except ValueError as exc:
            what = "not a grape URL" if key == "grape" else "not a market"
            parser.error(f"{key}={value}: {what} ({exc})")
    args.grapes = join_grape_urls(groups + args.grape) or [worker.default_grape]
    args.grape = ",".join(args.grapes)
    args.markets = markets + args.market or [DEFAULT_MARKET]
    twice = sorted({m for m in args.markets if args.markets.count(m) > 1})
    if twice:
        parser.error(f"market {twice[0]} given twice")
    if len(args.markets) > 1 and args.port and args.port + len(args.markets) - 1 > 65535:
        parser.error(f"--port {args.port}: not enough ports above it for every market")
    args.market = args.markets[0]
    return args


def _market_args(worker: WorkerProgram, args: argparse.Namespace, n: int) -> argparse.Namespace:
    """The arguments of the `n`th market of `args.markets`, as if it were served alone:
    its files (an explicit `--db` or `--key-file` with the market put in it when there
    are several), its port. `args.several` tells the role's `build` which case it is."""
    market, several = args.markets[n], len(args.markets) > 1
    one = argparse.Namespace(**vars(args))
    one.market, one.several = market, several
    if args.db is None:
        one.db = market_path(worker.default_db, market)
    elif several:
        one.db = market_path(args.db, market)
    key_name = market_path(f"{worker.key_name}.key", market)  # a key per market
    if args.key_file is None:
        one.key_file = str(Path(one.db).parent / key_name)
    elif several:
        one.key_file = market_path(args.key_file, market)
    one.port = args.port + n if args.port else 0
    return one


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
    none; the first market's (`Metrics.for_market` gives the others', on the same page).
    prometheus-client is imported only here, and only with the flag."""
    if args.metrics_port is None:
        return NO_METRICS
    serving = serve_prometheus(args.metrics_port, worker.role, market=args.markets[0])
    metrics, port = stack.enter_context(serving)
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


@dataclass
class _Market:
    """One market of a process serving several: how to run it, the files it holds."""

    args: argparse.Namespace
    make_run: Callable[[Transport], Runner]
    files: ExitStack


_MARKET: contextvars.ContextVar[str] = contextvars.ContextVar("market", default="-")
"""The market whose task logs, for the log lines of a process serving several."""


class _MarketField(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.market = _MARKET.get()
        return True


async def _serve_markets(worker: WorkerProgram, markets: list[_Market], failed: list[int]) -> None:
    """Run every market in a task of its own until a signal, or until all stopped; the
    exit status of each market that failed is appended to `failed`, in turn."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        async with anyio.create_task_group() as each:
            for market in markets:
                each.start_soon(_serve_market, worker, market, failed)
        if not tg.cancel_scope.cancel_called:
            logging.error("every market stopped")
            tg.cancel_scope.cancel()


async def _serve_market(worker: WorkerProgram, market: _Market, failed: list[int]) -> None:
    """One market, as `_serve` runs it alone, except that its end ends nothing else:
    its failure is logged and its status appended to `failed`, its files closed."""
    args = market.args
    _MARKET.set(args.market)
    try:
        async with (
            open_transport("grenache", grape=args.grapes) as transport,
            anyio.create_task_group() as tg,
        ):
            port = await tg.start(market.make_run(transport))
            logging.info(
                "%s worker ready on port %d via %s (market %s)",
                worker.name,
                port,
                args.grape,
                args.market,
            )
        logging.error("market %s stopped", args.market)
        failed.append(EXIT_FAILED)
    except Exception as exc:
        failed.append(_failed(worker, args.market, exc))
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(market.files.close)


def _failed(worker: WorkerProgram, market: str, exc: Exception) -> int:
    """Log why `market` stopped; its exit status (as `_main` would give it alone)."""
    leaves = _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    why = "; ".join(str(leaf) for leaf in leaves)
    for leaf in leaves:
        if isinstance(leaf, TransportError | DatabaseInUse):
            logging.error("market %s stopped: %s", market, why)
            return EXIT_FAILED
        for kind, code in worker.stops:
            if isinstance(leaf, kind):
                logging.error("market %s stopped: %s", market, why)
                return code
    logging.error("market %s stopped: %s", market, why, exc_info=exc)
    return EXIT_FAILED


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logging.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _main(worker: WorkerProgram, argv: list[str]) -> int:
    args = _parse_args(worker, argv)
    several = len(args.markets) > 1
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        if not several
        else "%(asctime)s %(levelname)s %(name)s [%(market)s]: %(message)s",
        stream=sys.stderr,
    )
    if several:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_MarketField())
    status = EXIT_OK
    with ExitStack() as stack:
        try:
            metrics = _open_metrics(worker, args, stack)
        except (ImportError, OSError) as exc:
            logging.error("--metrics-port %d: %s", args.metrics_port, exc)
            return EXIT_USAGE
        each = [_market_args(worker, args, n) for n in range(len(args.markets))]
        for one in each:
            one.metrics = metrics.for_market(one.market)
            try:
                one.key = load_or_create_key(one.key_file)
            except OSError as exc:
                logging.error("--key-file: %s", exc)
                return EXIT_USAGE
            logging.info(
                "%s key %s (public %s)", worker.name, one.key_file, public_key_hex(one.key)
            )
        stops = tuple(kind for kind, _status in worker.stops)
        try:
            if not several:
                anyio.run(_serve, worker, each[0], worker.build(each[0], stack))
            else:
                markets: list[_Market] = []
                failed: list[int] = []
                for one in each:  # a failure here, at start, stops them all
                    files = stack.enter_context(ExitStack())
                    markets.append(_Market(one, worker.build(one, files), files))
                anyio.run(_serve_markets, worker, markets, failed)
                status = failed[0] if failed else EXIT_OK
        except* (TransportError, DatabaseInUse) as group:
            logging.error("stopped: %s", "; ".join(str(exc) for exc in _leaves(group)))
            status = EXIT_FAILED
        except* stops as group:
            leaves = _leaves(group)
            logging.error("stopped: %s", "; ".join(str(exc) for exc in leaves))
            status = next(code for kind, code in worker.stops if isinstance(leaves[0], kind))
    return status


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The errors themselves, out of task groups nested in task groups."""
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def run_worker_program(worker: WorkerProgram, argv: list[str]) -> int:
    """Run `worker` with command-line `argv`; return the exit status (0; 1 on a
    transport failure such as an unreachable grape; 2 when `--metrics-port` cannot be
    served, prometheus-client missing or the port taken, or the key file is unusable).
    With several markets: once every market stopped, or on a signal, the status of the
    first market that failed (0 if none did)."""
    return _main(worker, argv)
