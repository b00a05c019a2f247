"""Free loopback ports for test processes (grapes, Node peers)."""

from __future__ import annotations

import socket

__all__ = ["free_port"]

_handed_out: set[int] = set()


def free_port(*, udp: bool = False) -> int:
    """Return a port free on 127.0.0.1 for TCP (and for UDP too when `udp` is True).

    The port is released before returning, so another process could take it first; the
    ports handed out by this process are remembered and never handed out twice.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if port in _handed_out:
                continue
            if udp:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                    try:
                        dgram.bind(("127.0.0.1", port))
                    except OSError:
                        continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")
