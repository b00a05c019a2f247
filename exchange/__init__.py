"""The services of the exchange, one folder per role, in the order an order meets them.

```
client ──submit_order──▶ sequencer ──process_order──▶ matcher ──put──▶ versions (DHT)
  ▲                                                      │
  └───────────── orderbook_updated / orderbook_head ─────┘
```
- `exchange.protocol`: the services' names, typed messages, error codes and exceptions;
- `exchange.client`: a node with its own verified replica, and `bin/client.py`'s program;
- `exchange.sequencer`: the submit_order worker and its journal;
- `exchange.matcher`: the process_order worker, `apply_entry` and its applied log;
- `exchange.versions`: the versioned book in the DHT (page trees, publisher, reader);
- `exchange.tools`: the operator's `dex` (replay, demo, head, book, watch, journal, status, ...).

The most used names are re-exported here.
"""

from exchange.client import ClientNode
from exchange.matcher import ProcessWorker, apply_entry
from exchange.protocol import Entry, ExchangeError, InvalidVersion, OrderRefused, ReplayError
from exchange.sequencer import Journal, SubmitWorker
from exchange.tools import ReplayResult, replay_journal, run_demo

__all__ = [
    "ClientNode",
    "Entry",
    "ExchangeError",
    "InvalidVersion",
    "Journal",
    "OrderRefused",
    "ProcessWorker",
    "ReplayError",
    "ReplayResult",
    "SubmitWorker",
    "apply_entry",
    "replay_journal",
    "run_demo",
]
