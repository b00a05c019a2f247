"""The bin scripts of the two workers: they start from the repo root and explain themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


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


@pytest.mark.parametrize("script", ["bin/submitOrderWorker.py", "bin/processOrderWorker.py"])
def test_an_unreachable_grape_is_a_clear_error(script: str, tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, so the announce is refused at once.
    result = subprocess.run(
        [sys.executable, script, "grape=http://127.0.0.1:1", "--db", str(tmp_path / "w.db")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "stopped: could not announce" in result.stderr
    assert "sub-exception" not in result.stderr


@pytest.mark.parametrize(
    "words",
    [
        ["grape=http://127.0.0.1:1,127.0.0.1:2"],
        ["--grape", "http://127.0.0.1:1", "--grape", "http://127.0.0.1:2/x"],
    ],
)
def test_a_malformed_grape_url_is_a_usage_error(words: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "bin/submitOrderWorker.py", *words],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "not a grape URL" in result.stderr


def test_several_unreachable_grapes_are_named_in_one_error(tmp_path: Path) -> None:
    grapes = "http://127.0.0.1:1,http://127.0.0.1:2"
    result = subprocess.run(
        [
            sys.executable,
            "bin/submitOrderWorker.py",
            f"grape={grapes}",
            "--db",
            str(tmp_path / "w.db"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"stopped: could not announce ['submit_order'] via {grapes}" in result.stderr
