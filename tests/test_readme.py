"""The README: its library example runs as written, and its run book is what works."""

import re
import subprocess
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


REPO = README.parent


def _run_book() -> list[str]:
    """The README's run book: the lines of the block after "## The run book"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The run book") :]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).splitlines()


def test_the_run_books_grapes_bind_loopback() -> None:
    """Issue 16: the README's grapes listened on every interface (``*:30001``)."""
    grapes = [line for line in _run_book() if line.startswith("node_modules/.bin/grape ")]
    assert len(grapes) == 2
    for line in grapes:
        assert line.split()[-2:] == ["-b", "127.0.0.1"], line
    # -b is the grape CLI's own flag for the listening host (an alias of --bind).
    cli = (REPO / "node_modules" / "grenache-grape" / "bin" / "grape.js").read_text()
    assert re.search(r"\.option\('b', \{\s*describe: 'Listening host',\s*alias: 'bind'", cli)


def test_the_readme_says_how_dex_is_reached() -> None:
    """Issue 16: ``dex`` was not on PATH and the README did not say where it is."""
    text = README.read_text(encoding="utf-8")
    assert "run as `bin/dex`" in text
    assert "`bin/dex status`" in text
    proc = subprocess.run(
        [str(REPO / "bin" / "dex"), "--help"], capture_output=True, text=True, timeout=60,
        cwd="/", check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "status" in proc.stdout


def test_the_readme_lists_the_clients_exit_codes() -> None:
    from exchange.runtime import (
        EXIT_FAILED,
        EXIT_NOT_CONFIRMED,
        EXIT_REJECTED,
        EXIT_UNREACHABLE,
        EXIT_UNTRUSTED,
        EXIT_USAGE,
    )

    text = README.read_text(encoding="utf-8")
    for code, words in (
        (EXIT_FAILED, "refused by the exchange"),
        (EXIT_USAGE, "usage"),
        (EXIT_UNREACHABLE, "unreachable"),
        (EXIT_REJECTED, "rejected by the matcher"),
        (EXIT_NOT_CONFIRMED, "**not confirmed in time**"),
        (EXIT_UNTRUSTED, "the matcher is not trusted"),
    ):
        assert f"| {code} | {words}" in text, (code, words)
    assert len({EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REJECTED, EXIT_NOT_CONFIRMED,
                EXIT_UNTRUSTED}) == 6  # fmt: skip
