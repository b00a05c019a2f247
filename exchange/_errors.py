"""Moved to `exchange.protocol` (this module goes away with the reshape)."""

from exchange.protocol import (
    ERR_BAD_REQUEST,
    ERR_INTERNAL,
    ERR_SEQ_GAP,
    ERR_UNAVAILABLE,
    ERR_VALIDATION,
    ExchangeError,
    InvalidVersion,
    error_reply,
)

__all__ = [
    "ERR_BAD_REQUEST",
    "ERR_INTERNAL",
    "ERR_SEQ_GAP",
    "ERR_UNAVAILABLE",
    "ERR_VALIDATION",
    "ExchangeError",
    "InvalidVersion",
    "error_reply",
]
