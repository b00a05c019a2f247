"""`bin/client`, `bin/submitOrderWorker`, `bin/processOrderWorker`, `bin/dex`: one launcher.

They run from any working directory with the project's environment; a real run of all
three on grapes is in test_dex_network.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LAUNCHERS = ["client", "submitOrderWorker", "processOrderWorker", "dex"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_help_from_another_directory(name: str, tmp_path: Path) -> None:
    launcher = REPO / "bin" / name
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith("#!/usr/bin/env bash\n")
    result = run([str(launcher), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert not list(tmp_path.iterdir())  # --help made no data directory


@pytest.mark.parametrize("name", LAUNCHERS)
def test_the_python_scripts_are_executable_too(name: str, tmp_path: Path) -> None:
    script = REPO / "bin" / f"{name}.py"
    assert os.access(script, os.X_OK)
    result = run([str(script), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_a_python_script_started_by_another_python_moves_to_the_projects(tmp_path: Path) -> None:
    bare = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
    result = run([bare, "-S", str(REPO / "bin" / "client.py"), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: bin/client" in result.stdout


def test_a_symlink_to_a_launcher_runs_the_launchers_script(tmp_path: Path) -> None:
    link = tmp_path / "my-client"
    link.symlink_to(REPO / "bin" / "client")
    result = run([str(link), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: bin/client" in result.stdout


def test_without_the_environment_the_launcher_says_make_setup(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "bin" / "client", checkout / "bin" / "client")
    result = run([str(checkout / "bin" / "client"), "--help"], tmp_path)
    assert result.returncode == 127
    assert result.stdout == ""
    assert "run `make setup`" in result.stderr
    assert str(checkout) in result.stderr


def test_arguments_and_exit_status_pass_through(tmp_path: Path) -> None:
    result = run([str(REPO / "bin" / "client"), "clientId=a b"], tmp_path)
    assert result.returncode == 2
    assert "client: clientId: must be" in result.stderr
    assert "hint: --help lists every word and flag" in result.stderr


@pytest.mark.parametrize("name", LAUNCHERS)
def test_the_bootstrap_is_written_once(name: str) -> None:
    assert (REPO / "bin" / name).readlink() == Path("_launch")
    script = (REPO / "bin" / f"{name}.py").read_text()
    assert "import _bootstrap" in script
    assert "execv" not in script
