"""Top-level pytest configuration shared by every test package.

Hypothesis: every property and fuzz test runs under one of two profiles, loaded here
before any test module is imported (so a test's own ``@settings(...)`` inherits it):

- ``ci`` (the default, ``make test`` and ``.ci/run``): derandomized, no example
  database: each test draws the same examples on every run, its seed fixed by the
  test's source;
- ``long`` (``CHAOS_PROFILE=long``, what ``make chaos`` sets): at random, every test
  seeded with one seed drawn per run, or the one given with ``--hypothesis-seed``.

The header of the run prints the profile and, in ``long``, the seed to replay it with.
"""

import os
import random
from collections.abc import Iterator
from pathlib import Path

import hypothesis.core
import pytest
from hypothesis import settings

LONG_HYPOTHESIS = os.environ.get("CHAOS_PROFILE") == "long"

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("long", derandomize=False, database=None, deadline=None, print_blob=True)
settings.load_profile("long" if LONG_HYPOTHESIS else "ci")


def pytest_configure(config: pytest.Config) -> None:
    """In the long profile, one seed for the run (drawn unless --hypothesis-seed gave it)."""
    if LONG_HYPOTHESIS and config.getoption("--hypothesis-seed", None) is None:
        seed = random.SystemRandom().randrange(2**32)
        hypothesis.core.global_force_seed = seed  # type: ignore[assignment]  # typed None


def hypothesis_line() -> str:
    """How Hypothesis draws its examples in this run, with the seed to replay a long run."""
    if not LONG_HYPOTHESIS:
        return "hypothesis: profile ci, derandomized (each test's seed fixed by its source)"
    seed = hypothesis.core.global_force_seed
    return f"hypothesis: profile long, at random, seed {seed} (replay: --hypothesis-seed={seed})"


def pytest_report_header(config: pytest.Config) -> str:
    return hypothesis_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The same line at the end, which ``-q`` (no header) still shows."""
    terminalreporter.write_line(hypothesis_line())


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
