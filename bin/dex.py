#!/usr/bin/env python3
"""The operator's tool: `python bin/dex.py status` (or `bin/dex status`, or `dex` in the
activated environment). Thin on purpose: the program is `exchange.tools.main`.
"""

import sys

import _bootstrap  # noqa: F401  (first: the project's interpreter and packages)

from exchange.tools import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
