"""The bin scripts of the two workers: they start from the repo root and explain themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "names"),
    [
        ("bin/submitOrderWorker.py", ["grape=URL", "--grape", "--db", "--port", "submit_order"]),
        ("bin/processOrderWorker.py", ["grape=URL", "--grape", "--db", "--port", "process_order"]),
    ],
)
def test_help_runs_from_the_repo_root(script: str, names: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in names:
        assert name in result.stdout


def test_unknown_settings_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, "bin/submitOrderWorker.py", "grap=http://127.0.0.1:1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "expected grape=URL" in result.stderr
