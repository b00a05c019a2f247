"""The exchange's exceptions and the stable error codes of its wire replies.

```
ExchangeError                   anything the exchange services raise on purpose
└── InvalidVersion              a root hash that is not a valid version: missing or
                                tampered page, wrong format, malformed tree, book that
                                does not hash to what the root says
```
Wire replies carry errors as strings `"<CODE>: <detail>"` (see docs/protocol.md); the
codes below are the stable prefixes, so a peer in any language can branch on them
without parsing the detail. Transport failures stay `transports.TransportError`: they
say "the network broke", not "the exchange refused", and callers retry them.
"""

from __future__ import annotations

__all__ = [
    "ERR_BAD_REQUEST",
    "ERR_INTERNAL",
    "ERR_SEQ_GAP",
    "ERR_UNAVAILABLE",
    "ERR_VALIDATION",
    "ExchangeError",
    "InvalidVersion",
    "error_reply",
]

ERR_VALIDATION = "ERR_VALIDATION"
"""The command is well-formed JSON but breaks a rule (field and rule in the detail)."""

ERR_SEQ_GAP = "ERR_SEQ_GAP"
"""process_order got a sequence number that is not the next expected one."""

ERR_BAD_REQUEST = "ERR_BAD_REQUEST"
"""The payload is not the shape the service takes (not an object, unknown op, ...)."""

ERR_UNAVAILABLE = "ERR_UNAVAILABLE"
"""The service cannot serve now (a dependency is down); retrying later may succeed."""

ERR_INTERNAL = "ERR_INTERNAL"
"""A bug or an unexpected failure inside the service; the detail is for operators."""


def error_reply(code: str, detail: str) -> str:
    """Return the wire error string `"<code>: <detail>"`.

    One place builds the string so every service spells it the same way.

    Args:
        code: one of the `ERR_*` constants.
        detail: a short human-readable explanation (e.g. `"price: not a multiple of 0.01"`).

    Returns:
        The reply's error string.
    """
    return f"{code}: {detail}"


class ExchangeError(Exception):
    """Base class of every error the exchange package raises on purpose."""


class InvalidVersion(ExchangeError):
    """A root hash does not name a valid, complete version of the book.

    Raised by `exchange.versions.decode_root` and `VersionReader.fetch`. The reader
    changes nothing the caller holds when it raises, so the caller keeps its replica;
    a missing page (`"missing page ..."`) may appear later, so the caller may retry.
    """
