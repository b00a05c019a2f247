"""Moved to `exchange.protocol` (this module goes away with the reshape)."""

from exchange.protocol import Refused, error_string, service_handler

__all__ = ["Refused", "error_string", "service_handler"]
