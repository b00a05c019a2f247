"""The operator's tools: `dex` (replay the journal, run the demo), and what they build on.

`replay_journal` recomputes the book from the sequencer's journal with the core alone;
`run_demo` runs the whole exchange in one process on the memory transport.
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
