"""The optional compiled build of the matching core (docs/core.md, "Compiled build").

Everything else about the package is in pyproject.toml. When mypyc (part of mypy) and a
C compiler are available, the core's hot modules are compiled from the same source into
extension modules, which Python imports in preference to the ``.py`` files next to them;
``orderbook_core.COMPILED`` says which were loaded. The extensions are optional: if the
compiler fails, the build goes on and the package runs as pure Python.

``DEX_PURE_PYTHON=1`` skips the compilation (``make setup`` sets it for the editable dev
install, so the source tree never holds compiled modules).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup

# The modules compiled (docs/core.md, "Compiled build"): the book and the matching rules,
# where the time goes, and the wire codec (parse_command, measured 1.46x). The others
# stay Python: not on the per-order path, or measured to gain nothing (_encoding), or
# public API whose docstrings mypyc would drop (_wire wraps _codec for that).
COMPILED_MODULES = [
    "orderbook_core/_state.py",
    "orderbook_core/_rules.py",
    "orderbook_core/_journal.py",
    "orderbook_core/_book.py",
    "orderbook_core/_codec.py",
]


def compiled_extensions() -> list[Any]:
    """The mypyc extensions, or none (opt-out, or no mypyc to build them with)."""
    if os.environ.get("DEX_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("setup.py: mypyc not available, building pure Python", file=sys.stderr)
        return []
    try:
        extensions = mypycify(COMPILED_MODULES, opt_level="3", debug_level="0")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error: fall back, loudly
        print(f"setup.py: mypyc failed ({exc}), building pure Python", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # a compiler error leaves the pure-Python modules in use
    return list(extensions)


setup(ext_modules=compiled_extensions())
