"""The operator's tools: `dex` and what it builds on.

`dex` reads the network (`head`, `book`, `watch`, `status`, and the Grenache basics
`lookup`, `request`, `get`) and the sequencer's journal (`journal`, `replay`), answers
a client's questions from either (`order`, `orders`, `fills`), and runs the whole
exchange in one process (`demo`). `replay_journal` recomputes the book from
the journal with the core alone; `run_demo` runs the demo on the memory transport.
"""

from exchange.tools._demo import DemoResult, demo_orders, run_demo, run_demo_async
from exchange.tools._dex import main
from exchange.tools._replay import ReplayResult, replay_journal

__all__ = [
    "DemoResult",
    "ReplayResult",
    "demo_orders",
    "main",
    "replay_journal",
    "run_demo",
    "run_demo_async",
]
