"""Choose an adapter by name, like anyio chooses a backend.

The Grenache adapter is imported only when asked for, so its HTTP dependencies stay
optional for code (and tests) that use only `memory` or `loopback`.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from transports._base import Transport
from transports._loopback import LoopbackNetwork, LoopbackTransport
from transports._memory import MemoryNetwork, MemoryTransport

__all__ = ["TransportKind", "open_transport"]

TransportKind = Literal["memory", "loopback", "grenache"]
"""The adapter names `open_transport` knows."""


def open_transport(kind: TransportKind, **options: Any) -> Transport:
    """Make a transport of the given kind.

    Args:
        kind: "memory", "loopback" or "grenache".
        **options: the adapter's constructor arguments. "memory" takes
            ``network=MemoryNetwork()`` and "loopback" ``network=LoopbackNetwork(...)``
            (a fresh, private network when omitted: then nobody else can reach it);
            "grenache" passes them all to `transports.grenache.GrenacheTransport`,
            e.g. ``grape="http://127.0.0.1:30001"``.

    Returns:
        A new, open transport; use it with ``async with`` or call `aclose()`.

    Raises:
        ValueError: `kind` is not one of the known adapters.
        TypeError: an option the adapter does not take.
        ImportError: "grenache" was asked for but its module or dependencies are missing.
    """
    if kind == "memory":
        network = options.pop("network", None)
        _no_more(kind, options)
        return MemoryTransport(network if network is not None else MemoryNetwork())
    if kind == "loopback":
        network = options.pop("network", None)
        _no_more(kind, options)
        return LoopbackTransport(network if network is not None else LoopbackNetwork())
    if kind == "grenache":
        # Imported here, not at the top: only users of Grenache pay for (and need) it.
        module = importlib.import_module("transports.grenache")
        transport: Transport = module.GrenacheTransport(**options)
        return transport
    raise ValueError(f"unknown transport kind {kind!r}; expected memory, loopback or grenache")


def _no_more(kind: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"{kind} transport got unexpected options: {', '.join(sorted(options))}")
