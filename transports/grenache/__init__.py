"""The Grenache adapter: grenache-nodejs-http peer RPC and a Grape client, in Python.

Import cost: httptools and this subpackage are only imported when the adapter is asked for
(`transports.open_transport("grenache", grape=...)`). Give ``grape`` a list of URLs to
use several grapes (`GrapeLinks`, with the choice policy in `GrapeChoice`).
"""

from transports.grenache._failover import GrapeChoice
from transports.grenache._link import GrapeLink
from transports.grenache._links import GrapeLinks
from transports.grenache._transport import GrenacheTransport

__all__ = ["GrapeChoice", "GrapeLink", "GrapeLinks", "GrenacheTransport"]
