"""`dex replay` and the `dex` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange.protocol import Entry, ReplayError, parse_entry
from exchange.sequencer import Journal
from exchange.tools import main, replay_journal
from exchange.versions import book_hash
from orderbook_core import (
    DEFAULT_SPEC,
    CancelOrder,
    OrderBook,
    Trade,
    command_to_wire,
    parse_command,
)

ORDERS = [
    {"clientId": "bob", "orderId": "b1", "side": "sell", "price": "100", "amount": "3"},
    {"clientId": "carol", "orderId": "c1", "side": "sell", "price": "101", "amount": "2"},
    {"clientId": "alice", "orderId": "a1", "side": "buy", "price": "100.5", "amount": "1"},
    {"clientId": "carol", "orderId": "c1", "op": "cancel"},
    {"clientId": "dave", "orderId": "d1", "side": "buy", "price": "99", "amount": "0.25"},
]


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        for seq, payload in enumerate(ORDERS, start=1):
            command = parse_command(payload, DEFAULT_SPEC, seq=seq, ts=0)
            wire = command_to_wire(command, DEFAULT_SPEC)
            journal.append([parse_entry(seq, 999 + seq, wire, DEFAULT_SPEC)])
    return path


def expected(upto: int) -> OrderBook:
    book = OrderBook(DEFAULT_SPEC)
    for seq, payload in enumerate(ORDERS[:upto], start=1):
        book.apply(parse_command(payload, DEFAULT_SPEC, seq=seq, ts=999 + seq))
    return book


def test_replay_applies_every_entry_in_order(journal_path: Path) -> None:
    result = replay_journal(journal_path)
    assert result.seq == 5
    assert result.book == expected(5)
    assert result.book_hash == book_hash(expected(5))
    assert [t.trade_id for t in result.trades] == ["3.1"]
    assert all(isinstance(t, Trade) for t in result.trades)


def test_replay_upto(journal_path: Path) -> None:
    result = replay_journal(journal_path, upto=2)
    assert result.seq == 2
    assert result.book_hash == book_hash(expected(2))
    assert replay_journal(journal_path, upto=0).book_hash is None
    with pytest.raises(ReplayError, match="beyond the journal's head 5"):
        replay_journal(journal_path, upto=6)


def test_replay_missing_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope.sqlite"
    with pytest.raises(ReplayError, match="no journal at"):
        replay_journal(path)
    assert not path.exists()


def test_replay_refuses_a_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        bad = {"op": "new", "clientId": "bob", "orderId": "b1", "side": "up"}
        journal.append([Entry(CancelOrder(1, 1, "bob", "b1"), bad)])  # stored as it is
    with pytest.raises(ReplayError, match="journal entry 1 is not a command: side"):
        replay_journal(path)


def test_dex_replay_text(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--db", str(journal_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "seq 5"
    assert out[1] == f"book {book_hash(expected(5))}"
    assert out[2] == "resting orders 2, trades 1"
    assert out[4].split() == ["price", "amount", "total", "orders"]
    assert out[5].split()[:4] == ["ask", "100.00", "2.000", "2.000"]
    assert out[6] == "     ---- spread 1.00 (100.5 bps) ----"
    assert out[7].split()[:4] == ["bid", "99.00", "0.250", "0.250"]
    assert out[-2] == "last 1 of 1 trades:"
    assert out[-1] == "  trade      3.1: alice buys    1.000 @   100.00 from bob"


def test_dex_replay_json(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--db", str(journal_path), "--json", "--upto", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "seq": 3,
        "book": book_hash(expected(3)),
        "orders": 2,
        "trades": 1,
        "bids": [],
        "asks": [
            {"price": "100.00", "amount": "2.000", "orders": 1},
            {"price": "101.00", "amount": "2.000", "orders": 1},
        ],
        "spread": None,
        "lastTrades": [
            {
                "seq": 3,
                "tradeId": "3.1",
                "buyer": "alice",
                "seller": "bob",
                "price": "100.00",
                "amount": "1.000",
            }
        ],
    }


def test_dex_replay_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--db", str(tmp_path / "missing.sqlite")]) == 2
    assert "dex replay: no journal at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])
    with pytest.raises(SystemExit):
        main(["replay", "--db", "x", "--upto", "many"])


def test_dex_demo_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clients", "1"]) == 2
    assert "--clients must be 2-26" in capsys.readouterr().err
    assert main(["demo", "--markets", "0"]) == 2
    assert "--markets 1-26" in capsys.readouterr().err
