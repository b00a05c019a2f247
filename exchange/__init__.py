"""The services of the exchange: submit_order worker, process_order worker, client node.

The imperative shell around `orderbook_core`: these own the clock, sequence numbers,
SQLite, retries and the network (through `transports`). The versioned book in the DHT
lives in `exchange.versions`; the command lines in `exchange.cli` (`dex`),
`exchange.worker_cli` and `exchange.client_node.main`.
"""

from exchange._errors import ExchangeError, InvalidVersion
from exchange.client_node import ClientNode
from exchange.demo import run_demo
from exchange.journal import Journal, JournalEntry
from exchange.process_worker import ProcessWorker
from exchange.replay import ReplayError, ReplayResult, replay_journal
from exchange.submit_worker import SubmitWorker

__all__ = [
    "ClientNode",
    "ExchangeError",
    "InvalidVersion",
    "Journal",
    "JournalEntry",
    "ProcessWorker",
    "ReplayError",
    "ReplayResult",
    "SubmitWorker",
    "replay_journal",
    "run_demo",
]
