"""`dex journal`, `dex replay` on what is not a journal, and `dex demo` as a shell tool."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from exchange.protocol import ReplayError, parse_entry
from exchange.sequencer import Journal
from exchange.tools import main, replay_journal
from exchange.tools._journal_view import follow_entries, open_journal, orders_per_second
from orderbook_core import DEFAULT_SPEC, command_to_wire, parse_command

REPO = Path(__file__).resolve().parents[3]
T0 = 1_700_000_000_000


def write_journal(
    path: Path, payloads: Sequence[Mapping[str, object]], *, step_ms: int = 1000
) -> None:
    with Journal(path) as journal:
        for seq, payload in enumerate(payloads, start=1):
            command = parse_command(payload, DEFAULT_SPEC, seq=seq, ts=0)
            wire = command_to_wire(command, DEFAULT_SPEC)
            journal.append([parse_entry(seq, T0 + seq * step_ms, wire, DEFAULT_SPEC)])


ORDERS: list[dict[str, object]] = [
    {"clientId": "bob", "orderId": "b1", "side": "sell", "price": "100", "amount": "3"},
    {"clientId": "ann", "orderId": "a1", "side": "buy", "price": "99", "amount": "1"},
    {"clientId": "bob", "orderId": "b1", "op": "cancel"},
    {"clientId": "ann", "orderId": "a2", "side": "buy", "price": "98", "amount": "2", "tif": "IOC"},
]


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    write_journal(path, ORDERS)
    return path


def test_journal_lists_the_tail(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "--db", str(journal_path), "--tail", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "seq", "time", "client", "op", "orderId", "side", "price", "amount", "tif"
    ]  # fmt: skip
    assert lines[1].split()[:1] + lines[1].split()[2:] == ["3", "bob", "cancel", "b1"]
    assert lines[2].split()[2:] == ["ann", "new", "a2", "buy", "98.00", "2.000", "IOC"]


def test_journal_filters_and_json(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "--db", str(journal_path), "--order", "b1", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["seq"], r["command"]["op"]) for r in records] == [(1, "new"), (3, "cancel")]
    assert records[0]["ts"] == T0 + 1000
    assert main(["journal", "--db", str(journal_path), "--client", "ann", "--tail", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["4"]


def test_follow_yields_what_is_appended(journal_path: Path) -> None:
    class Done(Exception):
        pass

    appended: list[int] = []

    def sleep(_seconds: float) -> None:
        if appended:
            raise Done
        with Journal(journal_path) as writer:  # another handle, as the sequencer's
            cmd = parse_command(ORDERS[1] | {"orderId": "a9"}, DEFAULT_SPEC, seq=5, ts=0)
            wire = command_to_wire(cmd, DEFAULT_SPEC)
            writer.append([parse_entry(5, T0 + 9000, wire, DEFAULT_SPEC)])
        appended.append(5)

    seen = []
    with open_journal(journal_path) as journal:
        entries = follow_entries(journal, 4, client="ann", sleep=sleep)
        seen.append(next(entries).seq)
        with pytest.raises(Done):
            next(entries)
    assert seen == [5]


def test_orders_per_second_over_the_last_minute(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    many = [
        {"clientId": "c", "orderId": f"o{i}", "side": "buy", "price": "1", "amount": "1"}
        for i in range(90)
    ]
    write_journal(path, many, step_ms=1000)  # one a second: seq i at T0 + i s
    with open_journal(path) as journal:
        now = T0 + 90_000
        assert orders_per_second(journal, now_ms=now) == 61 / 60  # seqs 30..90
        assert orders_per_second(journal, now_ms=now + 3_600_000) == 0


def test_files_that_are_not_journals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    before = other.read_bytes()
    for path in (garbage, other):
        with pytest.raises(ReplayError, match="is not a journal"):
            replay_journal(path)
        assert main(["replay", "--db", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"dex replay: {path} is not a journal" in err
        assert "Traceback" not in err
        assert main(["journal", "--db", str(path)]) == 2
        assert "is not a journal" in capsys.readouterr().err
    assert other.read_bytes() == before  # a tool never writes someone else's file
    assert main(["journal", "--db", str(tmp_path / "missing.db")]) == 2
    assert not (tmp_path / "missing.db").exists()


def test_replay_defaults_to_the_sequencers_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    write_journal(tmp_path / "data" / "submit_journal.db", ORDERS)
    monkeypatch.chdir(tmp_path)
    assert main(["replay", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 4


def test_replay_reports_progress(journal_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    replay_journal(journal_path, progress=lambda seq, upto: calls.append((seq, upto)))
    assert calls == [(4, 4)]


def test_demo_timeout_is_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--timeout", "0.01"]) == 1
    assert "did not converge within 0.01 s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--timeout", "-1"])


@pytest.mark.timeout(60)
def test_demo_into_a_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `dex demo --json | head -0`: the reader is gone at once
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "exchange.tools", "demo", "--json"],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr == ""


@pytest.mark.timeout(60)
def test_demo_says_nothing_on_stderr_while_stopping() -> None:
    for seed in (1, 2, 3):
        proc = subprocess.run(
            [sys.executable, "-m", "exchange.tools", "demo", "--seed", str(seed), "--orders", "60"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0
        assert proc.stderr == "", proc.stderr
