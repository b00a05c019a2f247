"""The one place where the Grenache adapter turns library failures into transport errors.

httptools, anyio, the OS and the codec each raise their own exceptions; callers of the adapter
see only the tree in `transports._exceptions`. Every network operation of this package
runs inside `map_errors()`, which re-raises ``from exc`` so the cause stays visible.
"""

from __future__ import annotations

import errno
from types import TracebackType
from typing import Literal

import anyio
import httptools

from transports._exceptions import (
    ConnectionFailed,
    ConnectRefused,
    ProtocolError,
    RequestTimeout,
    TransportError,
)

__all__ = ["ConnectFailed", "map_errors"]


class ConnectFailed(ConnectRefused):
    """No connection could be made, so the request was certainly not delivered.

    Private refinement of the public `ConnectRefused`: safe to retry on another peer,
    and a sign that an announced peer is dead (refused) and should be dropped from the
    lookup cache.
    """


_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)
_REFUSED = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


class map_errors:  # lower case: it reads like the function it replaced
    """Translate failures inside the block; `what` names the peer/operation in messages.

    With ``connecting=True`` the block only opens a connection, so any `OSError` means
    the request was not delivered: it becomes `ConnectFailed`.

    - `TransportError` (incl. the codec's `CodecError`) passes through unchanged.
    - `TimeoutError` (from ``anyio.fail_after``) becomes `RequestTimeout`.
    - httptools' `HttpParserError` (a peer's bytes are not HTTP) becomes `ProtocolError`.
    - `OSError` while connecting (refused, unreachable: anyio raises a bare
      ``OSError("All connection attempts failed")`` with the cause chained) becomes
      `ConnectFailed`.
    - Other `OSError`, and anyio's broken/closed/end-of-stream errors, become
      `ConnectionFailed`.

    A class rather than a ``@contextmanager`` generator: it wraps every request, and
    a plain ``__exit__`` costs a fraction of a generator-based one.
    """

    __slots__ = ("connecting", "what")

    def __init__(self, what: str, *, connecting: bool = False) -> None:
        self.what = what
        self.connecting = connecting

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or isinstance(exc, TransportError) or not isinstance(exc, Exception):
            return False  # success, ours already, or cancellation / KeyboardInterrupt
        what = self.what
        if isinstance(exc, TimeoutError):
            raise RequestTimeout(f"{what}: timed out") from exc
        if isinstance(exc, httptools.HttpParserError):
            raise ProtocolError(f"{what}: bad HTTP: {exc}") from exc
        if isinstance(
            exc, anyio.EndOfStream | anyio.BrokenResourceError | anyio.ClosedResourceError
        ):
            raise ConnectionFailed(f"{what}: connection closed") from exc
        if isinstance(exc, OSError):
            detail = _describe(exc)
            if self.connecting or isinstance(exc, ConnectionRefusedError) or exc.errno in _REFUSED:
                raise ConnectFailed(f"{what}: {detail}") from exc
            raise ConnectionFailed(f"{what}: {detail}") from exc
        return False


def _describe(exc: OSError) -> str:
    cause = exc.__cause__
    if isinstance(cause, OSError):  # anyio wraps the real error of a single attempt
        exc = cause
    return exc.strerror or str(exc) or type(exc).__name__
