"""The exchange's wire protocol: service names, typed messages, error codes and errors.

Nothing else in the exchange parses or builds the exchange's wire: the sequencer, the
matcher and the client all speak through this package. docs/protocol.md is its
specification.
"""

from exchange.protocol._errors import (
    ERR_BAD_REQUEST,
    ERR_INTERNAL,
    ERR_SEQ_GAP,
    ERR_TIMEOUT,
    ERR_UNAVAILABLE,
    ERR_VALIDATION,
    RETRYABLE_CODES,
    ArgumentError,
    BadMessage,
    BadRootHash,
    ExchangeError,
    FetchFailed,
    InvalidVersion,
    OrderRefused,
    Refused,
    ReplayError,
    error_reply,
    error_string,
    service_handler,
)
from exchange.protocol._messages import (
    MAX_SEQ,
    Head,
    ProcessReply,
    ProcessRequest,
    SubmitReply,
    expected_seq,
    head_request_from_wire,
    root_hash_from_wire,
    seq_gap,
)
from exchange.protocol._names import (
    ORDERBOOK_HEAD,
    ORDERBOOK_UPDATED,
    PROCESS_ORDER,
    SUBMIT_ORDER,
)

__all__ = [
    "ERR_BAD_REQUEST",
    "ERR_INTERNAL",
    "ERR_SEQ_GAP",
    "ERR_TIMEOUT",
    "ERR_UNAVAILABLE",
    "ERR_VALIDATION",
    "MAX_SEQ",
    "ORDERBOOK_HEAD",
    "ORDERBOOK_UPDATED",
    "PROCESS_ORDER",
    "RETRYABLE_CODES",
    "SUBMIT_ORDER",
    "ArgumentError",
    "BadMessage",
    "BadRootHash",
    "ExchangeError",
    "FetchFailed",
    "Head",
    "InvalidVersion",
    "OrderRefused",
    "ProcessReply",
    "ProcessRequest",
    "Refused",
    "ReplayError",
    "SubmitReply",
    "error_reply",
    "error_string",
    "expected_seq",
    "head_request_from_wire",
    "root_hash_from_wire",
    "seq_gap",
    "service_handler",
]
