"""`python -m exchange.tools ...` is `dex ...`."""

import sys

from exchange.tools._dex import main

sys.exit(main())
