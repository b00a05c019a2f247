"""Async transports behind one interface: memory, loopback, and Grenache over HTTP."""

from transports._base import DEFAULT_TIMEOUT, JSON, Handler, PeerResult, Transport
from transports._exceptions import (
    ConnectionFailed,
    NoPeersError,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    ServiceError,
    TransportClosed,
    TransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "JSON",
    "ConnectionFailed",
    "Handler",
    "NoPeersError",
    "PayloadTooLarge",
    "PeerResult",
    "ProtocolError",
    "RemoteError",
    "RequestTimeout",
    "ServiceError",
    "Transport",
    "TransportClosed",
    "TransportError",
]
