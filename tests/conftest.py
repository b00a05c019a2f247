"""Top-level pytest configuration shared by every test package."""

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
def _module_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Client key files of a module's shared fixtures (set up before any test's) go to
    a temporary directory too, never the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        key_dir = tmp_path_factory.mktemp("module-keys")
        patch.setenv("DEX_KEY_DIR", str(key_dir))
        yield key_dir


@pytest.fixture(autouse=True)
def client_key_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Client key files go to a temporary directory of the test's own, never the user's
    home (the processes tests start inherit the variable); each test starts with no
    client key and no recorded matcher key."""
    key_dir = tmp_path_factory.mktemp("keys")
    monkeypatch.setenv("DEX_KEY_DIR", str(key_dir))
    return key_dir
