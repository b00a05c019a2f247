"""The challenge's client: `python bin/client.py clientId=client1 type=Buy amount=10 price=100`.

Thin on purpose: the program is `exchange.client.main` (`python bin/client.py --help`).
"""

import sys
from pathlib import Path

try:
    import exchange  # noqa: F401  (installed by `make setup`, editable)
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exchange.client import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
