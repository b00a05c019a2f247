#!/usr/bin/env python3
"""The process_order worker: `python bin/processOrderWorker.py grape=http://127.0.0.1:40001`.

It applies the sequenced commands through the matching core, stores each version of the
book in the DHT, serves `process_order` and `orderbook_head`, and tells every client
`orderbook_updated`. Its state (`--db`) survives restarts. Run it with the project's
interpreter (after `make setup`); `--help` lists the options. Thin on purpose: the program
is `exchange.matcher.main`.
"""

import sys

import _bootstrap  # noqa: F401  (first: the project's interpreter and packages)

from exchange.matcher import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
