"""The runnable examples run, as a reader would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("examples/core_basics.py", "refused: price: not a multiple of 0.01"),
        ("examples/whole_exchange.py", "both replicas hold the replayed book"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    proc = subprocess.run(
        [sys.executable, script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
