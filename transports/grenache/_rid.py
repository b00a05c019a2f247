"""Request ids: random UUID version 4 strings, as grenache-nodejs-http sends.

Every peer RPC and every grape call carries one. ``str(uuid.uuid4())`` builds a `UUID`
object to print it (about 3 µs); this formats the same 122 random bits from
`os.urandom` directly (under 1 µs), on the path of every request.
"""

from __future__ import annotations

import os

__all__ = ["new_rid"]


def new_rid() -> str:
    """A random UUID v4 string, e.g. ``"1a83ca5b-8003-4d87-9315-52624b57cbfe"``."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
