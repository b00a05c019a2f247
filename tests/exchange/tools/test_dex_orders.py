"""`dex order`, `dex orders`, `dex fills` and `dex journal`'s rejections, on journals
written here (the network source is tested on real grapes in test_dex_network.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from exchange.protocol import parse_entry
from exchange.sequencer import Journal
from exchange.tools import main
from orderbook_core import DEFAULT_SPEC, command_to_wire, parse_command

T0 = 1_700_000_000_000

DAY: list[dict[str, object]] = [
    # 1: bob's ask rests.
    {"clientId": "bob", "orderId": "b1", "side": "sell", "price": "100", "amount": "3"},
    # 2: ann lifts 1 of it: a1 filled (taker), b1 has 2 left.
    {"clientId": "ann", "orderId": "a1", "side": "buy", "price": "100", "amount": "1"},
    # 3: ann's bid rests.
    {"clientId": "ann", "orderId": "a2", "side": "buy", "price": "99", "amount": "2"},
    # 4: a cancel of an order that never was: the matcher rejects it.
    {"clientId": "carl", "orderId": "nope", "op": "cancel"},
    # 5: an FOK that cannot fill (only 2 offered): rejected.
    {"clientId": "ann", "orderId": "a3", "side": "buy", "price": "101", "amount": "5",
     "tif": "FOK"},
    # 6: ann cancels a2.
    {"clientId": "ann", "orderId": "a2", "op": "cancel"},
    # 7: an IOC takes 1 more of b1 (1 left).
    {"clientId": "ann", "orderId": "a4", "side": "buy", "price": "100", "amount": "1",
     "tif": "IOC"},
    # 8: an IOC for 2 fills the last 1 of b1; its other 1 is cancelled.
    {"clientId": "ann", "orderId": "a5", "side": "buy", "price": "100", "amount": "2",
     "tif": "IOC"},
    # 9: ann's bid rests; 10: she modifies it down to 3 (priority kept).
    {"clientId": "ann", "orderId": "a6", "side": "buy", "price": "98", "amount": "4"},
    {"clientId": "ann", "orderId": "a6", "op": "modify", "amount": "3"},
    # 11: a second resting bid of ann.
    {"clientId": "ann", "orderId": "a7", "side": "buy", "price": "97", "amount": "1"},
]  # fmt: skip


def write_journal(path: Path, payloads: Sequence[Mapping[str, object]]) -> None:
    with Journal(path) as journal:
        for seq, payload in enumerate(payloads, start=1):
            command = parse_command(payload, DEFAULT_SPEC, seq=seq, ts=0)
            wire = command_to_wire(command, DEFAULT_SPEC)
            journal.append([parse_entry(seq, T0 + seq * 1000, wire, DEFAULT_SPEC)])


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "journal.db"
    write_journal(path, DAY)
    return str(path)


def dex(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def order(capsys: pytest.CaptureFixture[str], db: str, client: str, oid: str) -> dict[str, Any]:
    status, out, err = dex(capsys, "order", client, oid, "--db", db, "--json")
    record: dict[str, Any] = json.loads(out)
    assert status == (1 if record["state"] == "unknown" else 0), err
    return record


def test_a_filled_maker_and_its_history(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    record = order(capsys, db, "bob", "b1")
    assert (record["state"], record["amount"], record["filled"], record["remaining"]) == (
        "filled", "3.000", "3.000", "0.000"
    )  # fmt: skip
    assert (record["source"], record["asOf"], record["complete"]) == ("journal", 11, True)
    assert [(s["seq"], s["event"]) for s in record["history"]] == [
        (1, "placed"), (1, "rested"), (2, "filled"), (7, "filled"), (8, "filled")
    ]  # fmt: skip
    assert record["history"][2]["counterparty"] == "ann/a1"
    status, out, _ = dex(capsys, "order", "bob", "b1", "--db", db)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "bob/b1  filled: 3.000 of 3.000, sell @ 100.00"
    assert lines[1] == "  from the journal (seq 1..11, complete)"
    assert lines[5].endswith("filled 1.000 @ 100.00 (maker, trade 7.1, against ann/a4)")


def test_cancelled_by_whom(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    record = order(capsys, db, "ann", "a2")
    assert (record["state"], record["reason"], record["remaining"]) == (
        "cancelled", "by its owner", "0.000"
    )  # fmt: skip
    record = order(capsys, db, "ann", "a5")
    assert (record["state"], record["filled"]) == ("cancelled", "1.000")
    assert record["reason"] == "the unfilled remainder of an IOC order"
    _, out, _ = dex(capsys, "order", "ann", "a5", "--db", db)
    assert out.splitlines()[0] == (
        "ann/a5  cancelled the unfilled remainder of an IOC order, 1.000 of 2.000 filled before"
    )


def test_filled_taker_rejected_and_resting(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert order(capsys, db, "ann", "a1")["state"] == "filled"
    assert order(capsys, db, "ann", "a4")["state"] == "filled"
    record = order(capsys, db, "ann", "a3")
    assert (record["state"], record["reason"]) == ("rejected", "ERR_EXEC_FOK_NOT_FILLABLE")
    _, out, _ = dex(capsys, "order", "ann", "a3", "--db", db)
    assert out.splitlines()[0] == "ann/a3  rejected: ERR_EXEC_FOK_NOT_FILLABLE"
    record = order(capsys, db, "ann", "a6")
    assert (record["state"], record["remaining"], record["amount"], record["price"]) == (
        "resting", "3.000", "4.000", "98.00"
    )  # fmt: skip
    assert record["history"][-1]["event"] == "modified"
    _, out, _ = dex(capsys, "order", "ann", "a6", "--db", db)
    assert out.splitlines()[0] == "ann/a6  resting: 3.000 of 4.000 left, buy @ 98.00"


def test_unknown_orders_exit_1(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "order", "carl", "nope", "--db", db)
    assert status == 1
    assert out.splitlines()[0] == "carl/nope  unknown: no such order in the journal"
    assert "a cancel of it is journaled at seq 4: rejected (no such order)" in out
    record = order(capsys, db, "carl", "nope")
    assert record["cancelRejectedAt"] == 4
    assert order(capsys, db, "ann", "zzz")["state"] == "unknown"
    assert order(capsys, db, "bob", "a1")["state"] == "unknown"  # ann's id, not bob's


def test_open_orders(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "orders", "ann", "--db", db, "--json")
    assert status == 0
    report = json.loads(out)
    assert (report["asOf"], report["source"]) == (11, "journal")
    assert [(o["orderId"], o["side"], o["price"], o["remaining"], o["seq"]) for o in
            report["orders"]] == [("a6", "buy", "98.00", "3.000", 9),
                                  ("a7", "buy", "97.00", "1.000", 11)]  # fmt: skip
    assert report["orders"][0]["ts"] == T0 + 9000
    _, out, _ = dex(capsys, "orders", "ann", "--db", db)
    lines = out.splitlines()
    assert lines[0] == "2 open orders of ann, from the journal at seq 11"
    assert lines[2].split()[:5] == ["a6", "buy", "98.00", "3.000", "9"]
    _, out, _ = dex(capsys, "orders", "bob", "--db", db)
    assert out.splitlines() == ["0 open orders of bob, from the journal at seq 11"]


def test_fills(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = dex(capsys, "fills", "ann", "--db", db, "--json")
    assert status == 0
    report = json.loads(out)
    assert report["fills"] == 3
    assert [
        (f["tradeId"], f["orderId"], f["side"], f["role"], f["price"], f["amount"],
         f["counterpartyClientId"], f["counterpartyOrderId"])
        for f in report["shown"]
    ] == [
        ("2.1", "a1", "buy", "taker", "100.00", "1.000", "bob", "b1"),
        ("7.1", "a4", "buy", "taker", "100.00", "1.000", "bob", "b1"),
        ("8.1", "a5", "buy", "taker", "100.00", "1.000", "bob", "b1"),
    ]  # fmt: skip
    assert report["shown"][0]["ts"] == T0 + 2000
    _, out, _ = dex(capsys, "fills", "bob", "--db", db, "--tail", "1")
    lines = out.splitlines()
    assert lines[0] == "3 fills of bob, from the journal (seq 1..11, complete)"
    assert lines[2].split() == [
        "8.1", "8", lines[2].split()[2], "sell", "maker", "100.00", "1.000", "b1", "ann/a5"
    ]  # fmt: skip


def test_journal_marks_what_the_matcher_rejected(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = dex(capsys, "journal", "--db", db, "--tail", "8")
    assert status == 0
    by_seq = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert by_seq["4"].split()[2:] == ["carl", "cancel", "nope", "rejected:", "ERR_ORDER_UNKNOWN"]
    assert "rejected: ERR_ORDER_UNKNOWN" in by_seq["4"]
    assert "rejected: ERR_EXEC_FOK_NOT_FILLABLE" in by_seq["5"]
    assert not any("rejected" in by_seq[s] for s in ("6", "7", "8", "9", "10", "11"))
    _, out, _ = dex(capsys, "journal", "--db", db, "--json", "--client", "carl")
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert (record["seq"], record["rejected"]) == (4, "ERR_ORDER_UNKNOWN")
    _, out, _ = dex(capsys, "journal", "--db", db, "--json", "--order", "a2")
    assert [json.loads(line).get("rejected") for line in out.splitlines()] == [None, None]
    _, out, _ = dex(capsys, "journal", "--db", db, "--json", "--client", "carl", "--no-replay")
    assert "rejected" not in json.loads(out)


def test_missing_journal_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["order", "ann", "a1"], ["orders", "ann"], ["fills", "ann"]):
        status, _, err = dex(capsys, *command, "--db", str(tmp_path / "none.db"))
        assert status == 2, command
        assert "no journal at" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["head"], ["book"], ["watch", "--once"], ["status"], ["lookup", "x"],
        ["request", "x", "null"], ["get", "1" * 40], ["order", "c", "o"], ["orders", "c"],
        ["fills", "c"],
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    "url",
    ["notaurl", "127.0.0.1:30001", "http://127.0.0.1", "http://h:99999",
     "https://127.0.0.1:30001", "http://127.0.0.1:30001/x"],
)  # fmt: skip
def test_a_malformed_grape_url_is_a_usage_error(
    argv: list[str], url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "-g", url])
    assert exit_.value.code == 2
    assert "argument -g/--grape:" in capsys.readouterr().err


def test_the_journal_commands_need_no_grenache_adapter(db: str) -> None:
    """The base install has no httptools: `dex --help` and the journal source must run."""
    code = (
        "import sys; sys.modules['httptools'] = None\n"
        "from exchange.tools import main\n"
        f"assert main(['order', 'ann', 'a6', '--db', {db!r}]) == 0\n"
        f"assert main(['journal', '--db', {db!r}]) == 0\n"
        "assert 'transports.grenache' not in sys.modules\n"
    )
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "ann/a6  resting" in proc.stdout
