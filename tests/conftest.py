"""Top-level pytest configuration shared by every test package."""

from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def client_key_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Client key files go to a temporary directory, never the user's home (the
    processes tests start inherit the variable)."""
    key_dir = tmp_path_factory.mktemp("keys")
    monkeypatch.setenv("DEX_KEY_DIR", str(key_dir))
    return key_dir
