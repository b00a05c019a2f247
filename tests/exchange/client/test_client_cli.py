"""`bin/client.py` as a process: clear messages and exit status, bounded in time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run(*words: str, timeout: float = 30) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "bin/client.py", *words],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_help() -> None:
    status, out, _, _ = run("--help")
    assert status == 0
    assert "usage: bin/client" in out
    assert "4    rejected by the matcher" in out
    assert "5    not confirmed in time" in out
    assert "`dex order <clientId> <orderId>`" in out
    assert "6    the matcher is not trusted" in out
    assert "3    unreachable" in out


def test_bad_arguments_exit_2_with_a_one_line_hint() -> None:
    status, out, err, _ = run("clientId=client1", "type=Buy", "amount=10", "price")
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        "client: expected key=value, got 'price'",
        "hint: --help lists every word and flag",
    ]


def test_bad_order_exits_2_before_any_network() -> None:
    status, _, err, _ = run(
        "clientId=client1",
        "type=Buy",
        "amount=10",
        "price=100.001",
        f"grape=http://127.0.0.1:{closed_port()}",
    )
    assert status == 2
    assert "client: bad order: price: not a multiple of 0.01" in err


def test_a_reserved_order_id_is_caught_locally() -> None:
    status, _, err, _ = run(
        "clientId=client1",
        "type=Buy",
        "amount=10",
        "price=100",
        "orderId=_x",
        f"grape=http://127.0.0.1:{closed_port()}",
    )
    assert status == 2
    assert "client: bad order: orderId: must not start with '_'" in err


def test_a_refused_grape_fails_long_before_the_timeout_with_exit_3() -> None:
    # Issue 16: nothing listens at the grape URL, so the connection is refused at once;
    # the client tries again briefly and gives up in about a second, not after the
    # whole --timeout (it used to retry for 30 s).
    grape = f"http://127.0.0.1:{closed_port()}"
    status, _, err, elapsed = run(
        "clientId=client1", "type=Buy", "amount=10", "price=100", f"grape={grape}", "--timeout=30"
    )
    assert status == 3
    assert f"client: nothing listens at grape {grape} (" in err
    assert "nothing was sent" in err
    assert len(err.splitlines()) == 1
    # About a second on a quiet machine; the bound is only "not the 30 s --timeout", so
    # a loaded machine's slow interpreter start does not fail it.
    assert elapsed < 15
