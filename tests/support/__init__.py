"""Test support: real grapes and Node peers for integration, interop and end-to-end tests.

- `support.grapes`: `running_grapes(n)`, the `grapes` fixture, `Grape`.
- `support.node`: `run_node`, `arun_node`, `open_node`, `require_node`.
- `support.ports`: `free_port`.
"""

from support.grapes import Grape, grape_call, running_grapes
from support.node import NodeProcess, arun_node, open_node, require_node, run_node
from support.ports import free_port

__all__ = [
    "Grape",
    "NodeProcess",
    "arun_node",
    "free_port",
    "grape_call",
    "open_node",
    "require_node",
    "run_node",
    "running_grapes",
]
