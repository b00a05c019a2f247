"""The client: a node with its own verified replica of the book, and the program around it.

A `ClientNode` submits commands to the sequencer and keeps a `Replica` that moves only
to versions it verified, fed by ``orderbook_updated`` and the matcher's
``orderbook_head``. `main` is the challenge's `bin/client.py`.
"""

from exchange.client._args import ClientArgs, parse_client_args
from exchange.client._coalesce import DEFAULT_LINGER, SubmitCoalescer
from exchange.client._node import ClientNode, NotAcknowledged, new_order_id, new_request_id
from exchange.client._output import Emit, Record, TextOrJsonWriter
from exchange.client._program import PUSH_ONLY_ENV, main, push_only_following, run_client
from exchange.client._replica import Replica, ReplicaUpdate, VersionSource
from exchange.client._source import DhtVersionSource

__all__ = [
    "DEFAULT_LINGER",
    "PUSH_ONLY_ENV",
    "ClientArgs",
    "ClientNode",
    "DhtVersionSource",
    "Emit",
    "NotAcknowledged",
    "Record",
    "Replica",
    "ReplicaUpdate",
    "SubmitCoalescer",
    "TextOrJsonWriter",
    "VersionSource",
    "main",
    "new_order_id",
    "new_request_id",
    "parse_client_args",
    "push_only_following",
    "run_client",
]
