"""Free loopback ports for test processes (grapes, Node peers)."""

from transports.grenache.testing import free_port

__all__ = ["free_port"]
