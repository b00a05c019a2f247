"""A client whose output pipe closes (`bin/client.py ... | head -1`) stops quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.grapes import shared_grapes

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.integration
def test_a_closed_output_pipe_ends_the_client_quietly() -> None:
    grape = shared_grapes()[0]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the client writes its first line
    try:
        result = subprocess.run(
            [sys.executable, "bin/client.py", "clientId=piped", f"grape={grape.url}"],
            cwd=REPO_ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
