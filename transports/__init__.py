"""Async transports behind one interface: memory, loopback, and Grenache over HTTP.

Pick one with `open_transport("memory" | "loopback" | "grenache", ...)`. The Grenache
adapter lives in `transports.grenache` and is not imported here, so its HTTP libraries
are needed only by code that uses it.
"""

from transports._base import DEFAULT_TIMEOUT, JSON, Handler, PeerResult, Transport
from transports._dht import MAX_VALUE_BYTES, check_key, check_value, dht_key, is_dht_key
from transports._exceptions import (
    ConnectionFailed,
    ConnectRefused,
    NoPeersError,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    ServiceError,
    TransportClosed,
    TransportError,
    peer_error,
)
from transports._factory import TransportKind, open_transport
from transports._loopback import FaultPlan, LoopbackNetwork, LoopbackTransport
from transports._memory import MemoryNetwork, MemoryTransport

__all__ = [
    "DEFAULT_TIMEOUT",
    "JSON",
    "MAX_VALUE_BYTES",
    "ConnectRefused",
    "ConnectionFailed",
    "FaultPlan",
    "Handler",
    "LoopbackNetwork",
    "LoopbackTransport",
    "MemoryNetwork",
    "MemoryTransport",
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
    "TransportKind",
    "check_key",
    "check_value",
    "dht_key",
    "is_dht_key",
    "open_transport",
    "peer_error",
]
