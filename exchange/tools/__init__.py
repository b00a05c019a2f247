"""The operator's tools: `dex` and what it builds on.

`dex` reads the network (`head`, `book`, `watch`, `status`, and the Grenache basics
`lookup`, `request`, `get`) and the sequencer's journal (`journal`, `replay`), answers
a client's questions from either (`order`, `orders`, `fills`), and runs the whole
exchange in one process (`demo`). `replay_journal` recomputes the book from
the journal with the core alone; `run_demo` runs the demo on the memory transport;
`export_journal` and `import_journal` move a journal between stores (`dex journal
export`, `dex journal import`).
"""

from exchange.tools._demo import DemoResult, demo_orders, run_demo, run_demo_async
from exchange.tools._dex import main
from exchange.tools._journal_move import Imported, export_journal, import_journal
from exchange.tools._replay import ReplayResult, replay_journal

__all__ = [
    "DemoResult",
    "Imported",
    "ReplayResult",
    "demo_orders",
    "export_journal",
    "import_journal",
    "main",
    "replay_journal",
    "run_demo",
    "run_demo_async",
]
