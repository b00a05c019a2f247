"""The documentation site builds with no warning (``mkdocs build --strict``, what
``make docs`` runs), and its API reference shows every public name of each package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import exchange
import orderbook_core
import orderbook_core.testing
import transports

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PAGES: dict[str, ModuleType] = {
    "orderbook_core": orderbook_core,
    "testing": orderbook_core.testing,
    "transports": transports,
    "exchange": exchange,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


@pytest.mark.parametrize("page", sorted(PAGES))
def test_api_reference_shows_every_public_name(site: Path, page: str) -> None:
    module = PAGES[page]
    html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
    shown = set(re.findall(rf'id="{re.escape(module.__name__)}\.(\w+)"', html))
    assert set(module.__all__) <= shown, sorted(set(module.__all__) - shown)
    assert not {name for name in shown if name.startswith("_") and not name.endswith("__")}


def test_every_page_of_docs_is_in_the_site(site: Path) -> None:
    for page in (REPO / "docs").rglob("*.md"):
        relative = page.relative_to(REPO / "docs").with_suffix("")
        built = site / "index.html" if relative.name == "index" else site / relative / "index.html"
        assert built.is_file(), page
