"""The documented switch to the long Hypothesis profile really switches it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _max_examples(profile: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    if profile is not None:
        env["HYPOTHESIS_PROFILE"] = profile
    code = "import core_support; print(core_support.CORE_PROFILE.max_examples)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return int(out.stdout)


def test_hypothesis_profile_core_long_explores_more() -> None:
    assert _max_examples(None) == 150
    assert _max_examples("core-long") == 2000
