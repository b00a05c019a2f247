"""The dedupe keys in memory (`exchange.sequencer._seen`): a key the journal holds is
never missed, so a repeat is still a repeat; a new key skips the journal's lookup."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, signed

from exchange.protocol import SUBMIT_ORDER, Entry
from exchange.sequencer import Journal, SubmitWorker
from exchange.sequencer import _journal as journal_module
from exchange.sequencer._seen import SeenKeys
from orderbook_core import DEFAULT_SPEC
from transports import MemoryNetwork, open_transport


def test_no_key_added_is_ever_missed_and_few_others_are_seen() -> None:
    seen = SeenKeys()
    added = [("c", "new", f"o-{n}") for n in range(200_000)]  # past the first layer
    for key in added:
        seen.add(key)
    assert all(key in seen for key in added)
    assert len(seen) == len(added)
    others = [("c", "new", f"x-{n}") for n in range(20_000)]
    false_positives = sum(key in seen for key in others)
    assert false_positives < len(others) * 0.03  # about 1% by design


def test_the_journal_lists_every_deduplicated_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_KEY_PAGE", 2)  # several pages
    orders = [{**NEW, "orderId": f"a{n}"} for n in range(5)]
    payloads = [*orders, CANCEL, MODIFY, {**MODIFY, "requestId": "m2"}]
    with Journal(tmp_path / "j.db") as journal:
        anyio.run(_submit_all, journal, payloads)
        keys = list(journal.dedupe_keys())
    assert sorted(keys) == sorted(
        [("alice", "new", f"a{n}") for n in range(5)]
        + [("alice", "cancel", "a1"), ("alice", "modify", "m1"), ("alice", "modify", "m2")]
    )


class CountedLookups(Journal):
    """Counts the keys looked up in the file."""

    looked_up: list[tuple[str, str, str]]

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Entry | None]:
        self.looked_up.extend(keys)
        return super().find_many(keys)


NEW = {"clientId": "alice", "orderId": "a1", "side": "buy", "price": "100", "amount": "5"}
CANCEL = {"op": "cancel", "clientId": "alice", "orderId": "a1"}
MODIFY = {"op": "modify", "clientId": "alice", "orderId": "a0", "requestId": "m1", "price": "99"}


async def _submit_all(journal: Journal, payloads: list[dict[str, Any]]) -> list[Any]:
    """Each payload in turn, on a fresh worker over `journal`, once its keys are scanned
    (or the scan failed)."""
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = SubmitWorker(server, journal, DEFAULT_SPEC, signing_key=SEQUENCER_KEY)
        await tg.start(worker.run)
        with anyio.fail_after(10):
            while worker._seen_pending is not None:  # noqa: ASYNC110 - the scan task clears it
                await anyio.sleep(0.01)
        replies = [
            await client.request(SUBMIT_ORDER, signed(payload), timeout=10) for payload in payloads
        ]
        tg.cancel_scope.cancel()
    return replies


def test_after_a_restart_a_repeat_is_still_a_repeat_and_new_keys_skip_the_journal(
    tmp_path: Path,
) -> None:
    first = [NEW, {**NEW, "orderId": "a0"}, MODIFY, CANCEL]
    with CountedLookups(tmp_path / "j.db") as journal:
        journal.looked_up = []
        before = anyio.run(_submit_all, journal, first)
        # A fresh worker on the same journal: its keys come from the scan.
        journal.looked_up = []
        fresh = [{**NEW, "orderId": f"b{n}"} for n in range(50)]
        after = anyio.run(_submit_all, journal, [*first, *fresh])
        assert after[: len(first)] == before  # the first replies: nothing stored twice
        assert journal.head() == len(first) + len(fresh)
        # The repeats were looked up in the file; almost none of the fresh keys were.
        assert set(journal.looked_up) >= {
            ("alice", "new", "a1"),
            ("alice", "new", "a0"),
            ("alice", "modify", "m1"),
            ("alice", "cancel", "a1"),
        }
        assert len(journal.looked_up) < len(first) + 5


class UnreadableKeys(CountedLookups):
    def dedupe_keys(self) -> Iterator[tuple[str, str, str]]:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_failed_scan_leaves_every_lookup_to_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with UnreadableKeys(tmp_path / "j.db") as journal:
        journal.looked_up = []
        replies = anyio.run(_submit_all, journal, [NEW, NEW])
    assert replies[0] == replies[1]
    assert journal.looked_up == [("alice", "new", "a1")] * 2
    assert "scanning the journal's dedupe keys failed: disk I/O error" in caplog.text
