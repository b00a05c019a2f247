"""The one place where a service's exceptions become `ERR_*` wire reply strings.

Every service handler of the exchange is wrapped with `service_handler`. Inside it,
code raises what it means:

- `Refused(code, detail)` for a refusal the protocol defines (``ERR_SEQ_GAP``,
  ``ERR_BAD_REQUEST``, ``ERR_UNAVAILABLE``, ...);
- `orderbook_core.ValidationError` from the core's wire validator (``ERR_VALIDATION``);
- `transports.TransportError` when a dependency on the network failed, and
  `sqlite3.OperationalError` when the disk did (``ERR_UNAVAILABLE``: the caller retries);

and anything else is a bug: it is logged with its traceback and answered with
``ERR_INTERNAL``, never swallowed into a success. Business outcomes (a rejected order) are
not exceptions at all: they are events and go out as normal replies.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from exchange._errors import (
    ERR_BAD_REQUEST,
    ERR_INTERNAL,
    ERR_UNAVAILABLE,
    ERR_VALIDATION,
    ExchangeError,
    error_reply,
)
from orderbook_core import ValidationError
from transports import JSON, Handler, RemoteError, ServiceError, TransportError

__all__ = ["Refused", "error_string", "service_handler"]

_log = logging.getLogger("exchange.service")


class Refused(ExchangeError):
    """A refusal the wire protocol defines: replied as ``"<code>: <detail>"``.

    Args:
        code: one of the `exchange._errors` ``ERR_*`` constants.
        detail: the human-readable rest of the reply string.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(error_reply(code, detail))
        self.code = code
        self.detail = detail


def error_string(exc: Exception) -> str:
    """Return the wire error string for `exc` (see the module docstring for the mapping)."""
    if isinstance(exc, Refused):
        return str(exc)
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
        logger: where unexpected failures are logged (with their traceback).

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
            else:
                logger.info("%s: refused: %s", name, message)
            raise ServiceError(message) from exc

    return wrapped
