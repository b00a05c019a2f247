"""The sequencer's command line: `bin/submitOrderWorker.py`, `dex-submit-order-worker`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack

from exchange.protocol import SUBMIT_ORDER
from exchange.runtime import DEFAULT_GRAPE, Runner, WorkerProgram, run_worker_program
from exchange.sequencer._journal import Journal
from exchange.sequencer._worker import SubmitWorker
from transports import Transport

__all__ = ["DEFAULT_JOURNAL", "main"]

DEFAULT_JOURNAL = "data/submit_journal.db"
"""Where the sequencer keeps its journal unless `--db` says otherwise."""


def _build(args: argparse.Namespace, stack: ExitStack) -> Callable[[Transport], Runner]:
    journal = stack.enter_context(Journal(args.db))
    return lambda transport: (
        SubmitWorker(
            transport, journal, port=args.port, metrics=args.metrics, signing_key=args.key
        ).run
    )


_PROGRAM = WorkerProgram(
    name=SUBMIT_ORDER,
    role="sequencer",
    prog="submitOrderWorker.py",
    description="Serve submit_order: validate, sequence and journal orders, then "
    "forward them in order to process_order.",
    default_grape=DEFAULT_GRAPE,
    default_db=DEFAULT_JOURNAL,
    db_help="SQLite journal",
    port_help="port to serve on (default: a free one)",
    build=_build,
    key_name="sequencer",
)


def main(argv: list[str] | None = None) -> int:
    """Run the submit_order worker with `argv` (default: the process's); exit status."""
    return run_worker_program(_PROGRAM, sys.argv[1:] if argv is None else argv)
