"""The one exception tree of the transports package.

```
TransportError                  anything a transport raises on purpose
├── TransportClosed             you closed it (used after aclose())
├── NoPeersError                nobody serves that name (lookup came back empty)
├── RequestTimeout              no answer within the deadline
├── PayloadTooLarge             refused before sending (DHT value >= 1000 bytes, body bound)
├── ConnectionFailed            the peer or the network broke it (refused, reset, bad HTTP)
│   └── ConnectRefused          no connection was made: the request was surely not delivered
├── ProtocolError               the peer answered, but not in the protocol's shape
└── RemoteError                 the peer answered with an error string (`.message`)
```
A handler raises `RemoteError` (or `ServiceError`, its alias for handlers) to make the
server reply `[rid, "<message>", null]`; any other exception in a handler becomes the
reply `"ERR_INTERNAL: ..."` and is never swallowed into a success.
"""

from __future__ import annotations

__all__ = [
    "ConnectRefused",
    "ConnectionFailed",
    "NoPeersError",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteError",
    "RequestTimeout",
    "ServiceError",
    "TransportClosed",
    "TransportError",
    "peer_error",
]


class TransportError(Exception):
    """Base class of every error a transport raises on purpose."""


class TransportClosed(TransportError):
    """The transport was used after `aclose()`."""


class NoPeersError(TransportError):
    """No peer is announced for the service name."""


class RequestTimeout(TransportError):
    """The peer did not answer within the deadline."""


class PayloadTooLarge(TransportError):
    """The payload exceeds a documented bound; nothing was sent."""


class ConnectionFailed(TransportError):
    """The connection could not be made or broke mid-request."""


class ConnectRefused(ConnectionFailed):
    """No connection could be made (refused, unreachable): the request surely was not
    delivered, so no handler ran (a caller may tell "not sent" from "maybe taken")."""


class ProtocolError(TransportError):
    """The peer answered with bytes that are not the protocol's shape."""


class RemoteError(TransportError):
    """The peer answered with an error; `message` is its string, verbatim."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


ServiceError = RemoteError
"""What a service handler raises to reply with an error string (e.g. `ERR_SEQ_GAP: ...`)."""


def peer_error(exc: TransportError) -> str:
    """The `PeerResult.error` string for one peer's failure in a `map`.

    Every adapter maps failures with this one function, so a caller reads the same
    string for the same failure whichever adapter carried it: the peer's own error
    verbatim, or a transport code (``ERR_CLOSED``, ``ERR_TIMEOUT``, ``ERR_CONNECTION``,
    ``ERR_PROTOCOL``, ``ERR_TRANSPORT``) with a detail.
    """
    if isinstance(exc, RemoteError):
        return exc.message
    if isinstance(exc, TransportClosed):
        return "ERR_CLOSED"
    if isinstance(exc, RequestTimeout):
        return "ERR_TIMEOUT"
    if isinstance(exc, ConnectionFailed):
        return f"ERR_CONNECTION: {exc}"
    if isinstance(exc, ProtocolError):
        return f"ERR_PROTOCOL: {exc}"
    return f"ERR_TRANSPORT: {type(exc).__name__}: {exc}"
