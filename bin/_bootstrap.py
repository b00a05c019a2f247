"""The one bootstrap of the `bin/` scripts: run in the project's environment.

Imported first by each script. If the project's packages cannot be imported (the script
was started by another Python than `.venv/bin/python`, which `make setup` makes), it runs
the same script again with the project's interpreter; without one it puts the checkout on
`sys.path`, so a checkout whose package is not installed still runs.
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
