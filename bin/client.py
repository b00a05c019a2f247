#!/usr/bin/env python3
"""The challenge's client: `python bin/client.py clientId=client1 type=Buy amount=10 price=100`.

Thin on purpose: the program is `exchange.client.main` (`python bin/client.py --help`).
"""

import os
import sys
from pathlib import Path

try:
    import anyio  # noqa: F401  (the project's environment: `make setup`)

    import exchange  # noqa: F401  (installed there, editable)
except ImportError:
    _REPO = Path(__file__).resolve().parent.parent
    _VENV = _REPO / ".venv"
    if (_VENV / "bin" / "python").is_file() and Path(sys.prefix).resolve() != _VENV.resolve():
        # `./bin/<script>.py` started by another Python: run again in the project's.
        os.execv(_VENV / "bin" / "python", [str(_VENV / "bin" / "python"), *sys.argv])
    sys.path.insert(0, str(_REPO))  # a checkout whose package is not installed

from exchange.client import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
