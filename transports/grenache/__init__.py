"""The Grenache adapter: grenache-nodejs-http peer RPC and a Grape client, in Python.

Import cost: httptools and this subpackage are only imported when the adapter is asked for
(`transports.open_transport("grenache", grape=...)`).
"""

from transports.grenache._link import GrapeLink
from transports.grenache._transport import GrenacheTransport

__all__ = ["GrapeLink", "GrenacheTransport"]
