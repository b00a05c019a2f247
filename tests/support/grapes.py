"""Real grapes for integration tests: the library's `running_grapes` on this checkout.

```python
from support.grapes import running_grapes

with running_grapes(2) as grapes:          # sync; usable from any test or script
    url = grapes[0].url                    # "http://127.0.0.1:<api port>"
```
or, in a test module, the session-scoped pytest fixture::

    from support.grapes import grapes  # noqa: F401  (registers the fixture)

or `shared_grapes()`: one pair per test process, started on first use and stopped when
the process exits (the `grapes` fixture uses it, so a session starts grapes once).
`restarted_grape(dead, peers)` starts a grape killed by its PID again, with its flags.
The grapes run from the project's own `node_modules` (`make setup`); see
`transports.grenache.testing` for what "ready" means and how they are stopped.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import pytest

from support.node import NODE_MODULES, REPO_ROOT, node_env, require_node
from transports.grenache import testing
from transports.grenache.testing import Grape, grape_call

__all__ = ["Grape", "grape_call", "grapes", "restarted_grape", "running_grapes", "shared_grapes"]

GRAPE_JS = NODE_MODULES / "grenache-grape" / "bin" / "grape.js"


@contextmanager
def running_grapes(
    n: int = 2, *, ready_timeout: float = 20.0, extra_args: Sequence[str] = ()
) -> Iterator[list[Grape]]:
    """`transports.grenache.testing.running_grapes` with this checkout's grape.

    Raises:
        pytest.fail.Exception: node or node_modules is missing (run ``make setup``).
        TimeoutError: the grapes did not become ready within `ready_timeout` seconds.
    """
    grape = [require_node(), str(GRAPE_JS)]
    with testing.running_grapes(
        n, grape=grape, env=node_env(), cwd=REPO_ROOT, extra_args=extra_args,
        ready_timeout=ready_timeout,
    ) as grapes:  # fmt: skip
        yield grapes


@contextmanager
def restarted_grape(
    dead: Grape, peers: Sequence[Grape], *, ready_timeout: float = 20.0
) -> Iterator[Grape]:
    """`transports.grenache.testing.restarted_grape` with this checkout's grape: the grape
    `dead` (killed by its PID) started again with the same flags; stopped by PID."""
    grape = [require_node(), str(GRAPE_JS)]
    with testing.restarted_grape(
        dead, peers, grape=grape, env=node_env(), cwd=REPO_ROOT, ready_timeout=ready_timeout
    ) as again:
        yield again


_shared: list[Grape] = []
_shared_stack = ExitStack()


def shared_grapes() -> list[Grape]:
    """Two grapes shared by the whole process: started on first call, stopped at exit.

    Tests using them must use unique service names (grapes remember names for ever).
    """
    if not _shared:
        started = _shared_stack.enter_context(running_grapes(2))
        atexit.register(_shared_stack.close)
        _shared.extend(started)
    return list(_shared)


@pytest.fixture(scope="session")
def grapes() -> list[Grape]:
    """Two real grapes shared by the session (see `shared_grapes`)."""
    return shared_grapes()
