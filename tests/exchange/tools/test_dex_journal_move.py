"""`dex journal export` and `dex journal import`: a journal moved between stores keeps
every entry, key binding, modify requestId and the acked mark; a bad file or a target
holding something else changes nothing; an interrupted import finishes when run again."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from support.nats import nats_url, running_nats  # noqa: F401  (a module fixture)

from exchange.protocol import Entry, ReplayError, new_entry, parse_entry
from exchange.sequencer import JournalBackend, open_journal
from exchange.tools import export_journal, import_journal, main
from orderbook_core import DEFAULT_SPEC, MarketSpec, parse_command

KEY_A, KEY_B = "a" * 64, "b" * 64
_markets = itertools.count(1)


def _fill(journal: JournalBackend) -> None:
    """Six entries: two clients bound by their first commands, a modify with a requestId,
    one without, and the acked mark at 4."""
    spec = journal.spec
    commands: list[dict[str, Any]] = [
        {"clientId": "ann", "orderId": "a1", "side": "buy", "price": "99", "amount": "1"},
        {"clientId": "bob", "orderId": "b1", "side": "sell", "price": "101", "amount": "2"},
        {"op": "modify", "clientId": "ann", "orderId": "a1", "price": "100"},
        {"op": "modify", "clientId": "ann", "orderId": "a1", "price": "98"},
        {"op": "cancel", "clientId": "bob", "orderId": "b1"},
        {"clientId": "ann", "orderId": "a2", "side": "sell", "price": "105", "amount": "1"},
    ]
    entries = [_new(i, 1000 + i, c, spec) for i, c in enumerate(commands, 1)]
    journal.append(entries[:2], {1: KEY_A, 2: KEY_B})
    journal.append(entries[2:], None, {3: "r-1"})
    journal.mark_acked(4)


def _new(seq: int, ts: int, payload: dict[str, Any], spec: MarketSpec = DEFAULT_SPEC) -> Entry:
    return new_entry(parse_command(payload, spec, seq=seq, ts=ts), spec)


def _export(journal: JournalBackend) -> str:
    out = io.StringIO()
    export_journal(journal, out)
    return out.getvalue()


def _same(a: JournalBackend, b: JournalBackend) -> None:
    assert list(a.entries()) == list(b.entries())
    assert a.client_keys() == b.client_keys() == {"ann": KEY_A, "bob": KEY_B}
    assert a.modify_requests() == b.modify_requests() == {3: "r-1"}
    assert b.find("ann", "modify", "r-1") == a.get(3)
    assert b.acked() == 4


def test_sqlite_to_sqlite_through_the_command_line(tmp_path: Path) -> None:
    source, target, dump = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "dump.jsonl"
    with open_journal(f"sqlite:{source}") as journal:
        _fill(journal)
    assert main(["journal", "export", "--db", str(source), "-o", str(dump)]) == 0
    lines = dump.read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "dex-journal/1", "market": DEFAULT_SPEC.market,
                                    "head": 6, "acked": 4}  # fmt: skip
    assert json.loads(lines[1])["key"] == KEY_A
    assert json.loads(lines[3])["requestId"] == "r-1"
    assert main(["journal", "import", "--journal", f"sqlite:{target}", str(dump)]) == 0
    with open_journal(f"sqlite:{source}") as a, open_journal(f"sqlite:{target}") as b:
        _same(a, b)
    assert main(["journal", "import", "--journal", f"sqlite:{target}", str(dump)]) == 0  # again


def test_an_export_of_a_missing_journal_creates_nothing(tmp_path: Path) -> None:
    assert main(["journal", "export", "--db", str(tmp_path / "none.db")]) == 2
    assert not (tmp_path / "none.db").exists()


def test_an_interrupted_import_finishes_and_a_foreign_target_is_refused(tmp_path: Path) -> None:
    with open_journal(f"sqlite:{tmp_path / 'a.db'}") as source:
        _fill(source)
        text = _export(source)
        lines = text.splitlines(keepends=True)
        with open_journal(f"sqlite:{tmp_path / 'b.db'}") as target:
            first_three = [parse_entry(**_entry_args(line)) for line in lines[1:4]]
            target.append(first_three, {1: KEY_A, 2: KEY_B}, {3: "r-1"})
            assert import_journal(target, lines) == (3, 3)
            _same(source, target)
        with open_journal(f"sqlite:{tmp_path / 'c.db'}") as other:
            eve = {"clientId": "eve", "orderId": "e", "side": "buy", "price": "1", "amount": "1"}
            other.append([_new(1, 5, eve)])
            with pytest.raises(ReplayError, match="differs from the export at seq 1"):
                import_journal(other, lines)
            assert other.head() == 1


def _entry_args(line: str) -> dict[str, Any]:
    record = json.loads(line)
    return {"seq": record["seq"], "ts": record["ts"], "wire": record["command"],
            "spec": DEFAULT_SPEC}  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda ls: ls[:-1], "truncated"),
        (lambda ls: ls[:3] + ls[4:], "does not match its trailer|seq"),
        (lambda ls: [ls[0], ls[1].replace('"99', '"97'), *ls[2:]], "does not match"),
        (lambda ls: [ls[0].replace(DEFAULT_SPEC.market, "ETH-USD"), *ls[1:]], "market"),
        (lambda ls: ["{}\n", *ls[1:]], "not a journal export"),
        (lambda ls: [*ls, "{}\n"], "after the trailer"),
        (lambda ls: [ls[0], '{"seq": 1}\n', *ls[2:]], "not an entry"),
    ],
)
def test_a_damaged_export_is_refused_before_anything_is_written(
    tmp_path: Path, damage: Any, message: str
) -> None:
    with open_journal(f"sqlite:{tmp_path / 'a.db'}") as source:
        _fill(source)
        lines = _export(source).splitlines(keepends=True)
    with open_journal(f"sqlite:{tmp_path / 'b.db'}") as target:
        with pytest.raises(ReplayError, match=message):
            import_journal(target, damage(lines))
        assert target.head() == 0


@pytest.mark.integration
def test_sqlite_onto_jetstream_and_back(tmp_path: Path, nats_url: str) -> None:  # noqa: F811
    spec = dataclasses.replace(DEFAULT_SPEC, market=f"MV{next(_markets)}-USD")
    with open_journal(f"sqlite:{tmp_path / 'a.db'}", spec) as source:
        _fill(source)
        text = _export(source)
        with open_journal(nats_url, spec) as stream:
            assert import_journal(stream, text.splitlines(keepends=True)) == (6, 0)
            _same(source, stream)
            back = _export(stream)
    assert back == text  # the same file from either store
    with open_journal(f"sqlite:{tmp_path / 'b.db'}", spec) as again:
        import_journal(again, back.splitlines(keepends=True))
        assert again.modify_requests() == {3: "r-1"}


def test_an_unreachable_nats_server_is_exit_3(tmp_path: Path) -> None:
    from support.ports import free_port

    dump = tmp_path / "dump.jsonl"
    dump.write_text("")
    url = f"nats://127.0.0.1:{free_port()}"
    assert main(["journal", "import", "--journal", url, str(dump)]) == 3
