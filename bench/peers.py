"""What the benchmarks run besides our code: grapes and Node peers of this checkout.

Uses the library's `transports.grenache.testing` with the project's own `node_modules`
(`make setup` installs them); exits with a clear message when they are missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from transports.grenache.testing import Grape, running_grapes

__all__ = ["NODE_SCRIPTS", "REPO", "grapes", "node", "node_env"]

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
NODE_SCRIPTS = REPO / "tests" / "node"
"""The Node peers the interop tests use too (scripts run as files, nothing imported)."""
GRAPE_JS = NODE_MODULES / "grenache-grape" / "bin" / "grape.js"


def node() -> str:
    """The path of `node`, once `make setup` has installed the Node packages."""
    path = shutil.which("node")
    if path is None or not GRAPE_JS.is_file():
        sys.exit("node or node_modules missing: run `make setup`")
    return path


def node_env() -> dict[str, str]:
    """Environment for Node scripts: modules resolved from the checkout's node_modules."""
    return {**os.environ, "NODE_PATH": str(NODE_MODULES)}


@contextmanager
def grapes(n: int = 2, *, extra_args: Sequence[str] = ()) -> Iterator[list[Grape]]:
    """`n` grapes with the challenge's flags plus `-b 127.0.0.1`, on free ports."""
    with running_grapes(
        n, grape=[node(), str(GRAPE_JS)], env=node_env(), cwd=REPO, extra_args=extra_args
    ) as started:
        yield started
