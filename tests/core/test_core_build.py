"""Which build of the core is loaded: the compiled one (mypyc) or plain Python.

`make test` runs the editable dev install, pure Python; `make test-compiled` runs the
same tests against the compiled wheel and sets ``DEX_EXPECT_COMPILED=1``, so a build that
silently fell back to Python fails here instead of passing as "compiled".
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES

import orderbook_core
from orderbook_core import COMPILED, OrderBook


def test_the_loaded_build_is_the_expected_one() -> None:
    expected = os.environ.get("DEX_EXPECT_COMPILED", "0") == "1"
    assert COMPILED is expected, f"COMPILED={COMPILED}, loaded from {orderbook_core.__file__}"


def test_compiled_flag_matches_the_files_loaded() -> None:
    import sys

    names = (
        "orderbook_core._book",
        "orderbook_core._journal",
        "orderbook_core._rules",
        "orderbook_core._codec",
    )
    modules = [sys.modules[name] for name in names]
    files = [m.__file__ or "" for m in modules]
    compiled = [f.endswith(tuple(EXTENSION_SUFFIXES)) for f in files]
    assert compiled == [COMPILED] * len(names), files


def test_public_class_keeps_a_docstring_in_both_builds() -> None:
    assert OrderBook.__doc__
