"""The exchange's one exception tree and the stable error codes of its wire replies.

```
ExchangeError                   anything the exchange package raises on purpose
├── Refused                     a refusal the protocol defines: "<code>: <detail>"
│   └── AuthFailed              a signature missing, malformed or not by the key required
├── BadMessage                  a payload or reply that is not the protocol's shape
│   └── BadRootHash             an orderbook_updated payload that is not a root hash
├── OrderRefused                the sequencer refused a client's command (its ERR_* reply)
├── InvalidVersion              a root hash that names no valid, complete version
├── FetchFailed                 a version could not be fetched or did not verify
├── ReplayError                 a journal that cannot be replayed
├── ArgumentError               a malformed command-line argument
├── DatabaseInUse               a worker's database is held by another running worker
└── StorageUnavailable          a service's store cannot be reached or has no quorum now
```
Wire replies carry errors as strings ``"<CODE>: <detail>"`` (docs/protocol.md); the
codes are the stable prefixes, so a peer in any language can branch on them without
parsing the detail. Transport failures stay `transports.TransportError`: they say "the
network broke", not "the exchange refused", and callers retry them.

`error_string` is the one place where an exception becomes a reply string, and
`service_handler` the one wrapper that applies it to every service of the exchange.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Final

from orderbook_core import ValidationError
from transports import JSON, Handler, RemoteError, ServiceError, TransportError

__all__ = [
    "ERR_AUTH",
    "ERR_BAD_REQUEST",
    "ERR_INTERNAL",
    "ERR_SEQ_GAP",
    "ERR_TIMEOUT",
    "ERR_UNAVAILABLE",
    "ERR_VALIDATION",
    "RETRYABLE_CODES",
    "ArgumentError",
    "AuthFailed",
    "BadMessage",
    "BadRootHash",
    "DatabaseInUse",
    "ExchangeError",
    "FetchFailed",
    "InvalidVersion",
    "OrderRefused",
    "Refused",
    "ReplayError",
    "StorageUnavailable",
    "error_reply",
    "error_string",
    "service_handler",
]

ERR_VALIDATION: Final = "ERR_VALIDATION"
"""The command is well-formed JSON but breaks a rule (field and rule in the detail)."""

ERR_SEQ_GAP: Final = "ERR_SEQ_GAP"
"""process_order got a sequence number that is not the next expected one."""

ERR_BAD_REQUEST: Final = "ERR_BAD_REQUEST"
"""The payload is not the shape the service takes (not an object, unknown op, ...)."""

ERR_UNAVAILABLE: Final = "ERR_UNAVAILABLE"
"""The service cannot serve now (a dependency is down); retrying later may succeed."""

ERR_INTERNAL: Final = "ERR_INTERNAL"
"""A bug or an unexpected failure inside the service; the detail is for operators."""

ERR_AUTH: Final = "ERR_AUTH"
"""A signature is missing, malformed, or not by the key the sender must sign with
(docs/protocol.md, "Signatures"); nothing was stored."""

ERR_TIMEOUT: Final = "ERR_TIMEOUT"
"""The Grenache server cut a handler off at its time bound (the transport's code)."""

RETRYABLE_CODES: Final = (ERR_UNAVAILABLE, ERR_TIMEOUT)
"""Replies after which the same command may be sent again: a dependency failed, or the
handler was cut off (journaled or not: a retry with the same orderId finds out)."""

_RETRIED_CODES = (*RETRYABLE_CODES, ERR_SEQ_GAP)
"""Refusals the caller answers by sending again, until the cause is gone."""

_log = logging.getLogger("exchange.service")


def error_reply(code: str, detail: str) -> str:
    """Return the wire error string ``"<code>: <detail>"``."""
    return f"{code}: {detail}"


class ExchangeError(Exception):
    """Base class of every error the exchange package raises on purpose."""


class Refused(ExchangeError):
    """A refusal the wire protocol defines: replied as ``"<code>: <detail>"``.

    Args:
        code: one of the ``ERR_*`` constants.
        detail: the human-readable rest of the reply string.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(error_reply(code, detail))
        self.code = code
        self.detail = detail


class AuthFailed(Refused):
    """A signature is missing, malformed, or not by the required key: ``ERR_AUTH``.

    Args:
        detail: which field and why, e.g. ``"sig: not a valid signature by pubKey"``.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(ERR_AUTH, detail)


class BadMessage(ExchangeError):
    """A request payload or a reply that is not the protocol's shape.

    `str()` names the field and the rule. A service answers it with ``ERR_BAD_REQUEST``;
    a caller that gets a malformed reply treats the peer as broken.
    """


class BadRootHash(BadMessage):
    """An ``orderbook_updated`` payload that is not a 40-hex root hash."""


class OrderRefused(ExchangeError):
    """The sequencer refused a client's command; `str()` is its ``ERR_*`` reply."""


class InvalidVersion(ExchangeError):
    """A root hash does not name a valid, complete version of the book.

    The reader changes nothing the caller holds when it raises, so the caller keeps its
    replica; a missing page (``"missing page ..."``) may appear later, so it may retry.
    """


class FetchFailed(ExchangeError):
    """A version could not be fetched or did not verify; the replica is unchanged."""


class ReplayError(ExchangeError):
    """The journal cannot be replayed: missing file, a gap, or an entry the core refuses."""


class ArgumentError(ExchangeError):
    """A command-line argument is malformed; `str()` says which and why."""


class DatabaseInUse(ExchangeError):
    """Another running worker holds this worker's database: two writers would corrupt it.

    `str()` names the database, the lock file and, when it could be read, the holder's
    process id. Readers (`dex journal`, `dex replay`) take no lock and are never refused.
    """


class StorageUnavailable(ExchangeError):
    """A service's store cannot take or give data now (unreachable, or no quorum of its
    replicas): nothing was stored, and the same request may be sent again later.
    Answered ``ERR_UNAVAILABLE``."""


def error_string(exc: Exception) -> str:
    """Return the wire error string a service replies with for `exc`.

    `Refused` as itself; `BadMessage` ``ERR_BAD_REQUEST``; the core's `ValidationError`
    ``ERR_VALIDATION``; a failed dependency (network, the disk: `sqlite3.OperationalError`,
    or a store: `StorageUnavailable`) ``ERR_UNAVAILABLE``, so the caller retries; any
    other `ExchangeError` ``ERR_BAD_REQUEST``; anything else is a bug: ``ERR_INTERNAL``
    with the type only.
    """
    if isinstance(exc, Refused):
        return str(exc)
    if isinstance(exc, BadMessage):
        return error_reply(ERR_BAD_REQUEST, str(exc))
    if isinstance(exc, ValidationError):
        return error_reply(ERR_VALIDATION, str(exc))
    if isinstance(exc, RemoteError):
        # A peer we depend on refused: say which, without claiming its code as ours.
        return error_reply(ERR_UNAVAILABLE, f"upstream refused: {exc.message}")
    if isinstance(exc, TransportError):
        return error_reply(ERR_UNAVAILABLE, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, sqlite3.OperationalError):
        # Disk full, database locked, I/O error: nothing was stored; a retry may work.
        return error_reply(ERR_UNAVAILABLE, f"storage: {exc}")
    if isinstance(exc, StorageUnavailable):
        return error_reply(ERR_UNAVAILABLE, f"storage: {exc}")
    if isinstance(exc, ExchangeError):
        return error_reply(ERR_BAD_REQUEST, str(exc))
    return error_reply(ERR_INTERNAL, type(exc).__name__)


def service_handler(
    name: str, handler: Callable[[JSON], Awaitable[JSON]], *, logger: logging.Logger = _log
) -> Handler:
    """Wrap `handler` so that every exception it raises becomes an error reply.

    Args:
        name: the service name, for the log.
        handler: the service's logic; returns the reply data or raises.
        logger: where unexpected failures are logged (with their traceback), and
            refusals (info; debug for those the caller retries until the cause is gone:
            ``ERR_UNAVAILABLE``, ``ERR_TIMEOUT``, ``ERR_SEQ_GAP``).

    Returns:
        A transport `Handler` that raises only `transports.ServiceError(<error string>)`.
        Cancellation is not an `Exception` and passes through untouched.
    """

    @functools.wraps(handler)
    async def wrapped(payload: JSON) -> JSON:
        try:
            return await handler(payload)
        except Exception as exc:
            message = error_string(exc)
            if message.startswith(ERR_INTERNAL):
                logger.exception("%s: unexpected failure", name)
            elif message.startswith(_RETRIED_CODES):
                # Sent again and again while the cause lasts: the worker logs the cause
                # when it starts and when it ends, not each refusal.
                logger.debug("%s: refused: %s", name, message)
            else:
                logger.info("%s: refused: %s", name, message)
            raise ServiceError(message) from exc

    return wrapped
