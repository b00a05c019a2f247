"""The matcher's command line: `bin/processOrderWorker.py`, `dex-process-order-worker`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack

from exchange._program import Runner, WorkerProgram, run_worker_program
from exchange.matcher._worker import ProcessWorker
from exchange.protocol import PROCESS_ORDER
from transports import Transport

__all__ = ["DEFAULT_STATE", "main"]

DEFAULT_STATE = "data/process_state.db"
"""Where the matcher keeps its applied log unless `--db` says otherwise."""


def _build(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    return lambda transport: (
        ProcessWorker(transport, args.db, port=args.port, metrics=args.metrics).run
    )


_PROGRAM = WorkerProgram(
    name=PROCESS_ORDER,
    role="matcher",
    prog="processOrderWorker.py",
    description="Serve process_order and orderbook_head: apply sequenced orders, "
    "publish each version of the book to the DHT, broadcast orderbook_updated.",
    default_grape="http://127.0.0.1:40001",
    default_db=DEFAULT_STATE,
    db_help="SQLite state",
    port_help="port to serve on (default: a free one). Give a fixed port in production: "
    "grapes keep a dead worker's address announced, and a restarted worker on the "
    "same port takes it over",
    build=_build,
)


def main(argv: list[str] | None = None) -> int:
    """Run the process_order worker with `argv` (default: the process's); exit status."""
    return run_worker_program(_PROGRAM, sys.argv[1:] if argv is None else argv)
