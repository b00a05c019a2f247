"""The challenge's client: `python bin/client.py clientId=client1 type=Buy amount=10 price=100`.

Thin on purpose: the program is `exchange.client_node.main` (see its docstring and
`python bin/client.py --help`).
"""

import sys

from exchange.client_node import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
