#!/usr/bin/env python3
"""The submit_order worker: `python bin/submitOrderWorker.py grape=http://127.0.0.1:30001`.

It validates and sequences orders into its SQLite journal (`--db`) and forwards them, in
order, to the process_order worker. Run it with the project's interpreter (after
`make setup`: `.venv/bin/python`, or `python` in the activated venv); `--help` lists the
options. Thin on purpose: the program is `exchange.sequencer.main`.
"""

import sys

import _bootstrap  # noqa: F401  (first: the project's interpreter and packages)

from exchange.sequencer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
