"""The documented switches to the long Hypothesis profile really switch it."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from core_support import stateful_market

HERE = Path(__file__).resolve().parent


def _max_examples(**environ: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("HYPOTHESIS_PROFILE", "CHAOS_PROFILE")}
    env.update(environ)
    code = "import core_support; print(core_support.CORE_PROFILE.max_examples)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return int(out.stdout)


def test_hypothesis_profile_core_long_explores_more() -> None:
    assert _max_examples() == 150
    assert _max_examples(HYPOTHESIS_PROFILE="core-long") == 2000


def test_the_long_chaos_run_takes_the_long_profile() -> None:
    assert _max_examples(CHAOS_PROFILE="long") == 2000
    assert _max_examples(CHAOS_PROFILE="short") == 150


def test_the_long_profile_trades_non_unit_ticks_and_lots_over_a_wider_band() -> None:
    short, long = stateful_market(False), stateful_market(True)
    assert (short.spec.tick_size, short.spec.lot_size) == (Decimal(1), Decimal(1))
    assert long.spec.tick_size != 1
    assert long.spec.lot_size != 1
    assert long.high - long.low > 10 * (short.high - short.low)
    assert long.max_lots > 10 * short.max_lots
