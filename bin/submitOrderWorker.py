#!/usr/bin/env python3
"""The submit_order worker: `python bin/submitOrderWorker.py grape=http://127.0.0.1:30001`.

It validates and sequences orders into its SQLite journal (`--db`) and forwards them, in
order, to the process_order worker. Run it with the project's interpreter (after
`make setup`: `.venv/bin/python`, or `python` in the activated venv); `--help` lists the
options. Thin on purpose: the program is `exchange.sequencer.main`.
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

from exchange.sequencer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
