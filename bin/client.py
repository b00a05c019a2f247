#!/usr/bin/env python3
"""The challenge's client: `python bin/client.py clientId=client1 type=Buy amount=10 price=100`.

Thin on purpose: the program is `exchange.client.main` (`python bin/client.py --help`).
"""

import sys

import _bootstrap  # noqa: F401  (first: the project's interpreter and packages)

from exchange.client import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
