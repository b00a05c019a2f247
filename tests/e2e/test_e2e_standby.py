"""A hot standby matcher on real grapes and processes, under load: the active matcher
killed (``kill -9``), and the active matcher's grape killed (it gives up being active
after ``--give-up-after``, and the standby, announced through another grape, takes over).

Each time: a version beyond the dead one's head follows (seen by a client's
``orderbook_head``); every acknowledged order is in the journal at its seq, once; the
matcher applied them all; a client's replica equals ``dex replay``; and a client that
watched all along took only versions that link to the one it had (never a broken chain)
and whose books are the oracle's at their seqs (`chaos.harness.reference_books`).
Seeded, longer runs with the crash points and grape faults are in tests/chaos
(test_standby.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from signal import SIGKILL
from typing import Any

import pytest
from chaos.harness import reference_books
from support.grapes import restarted_grape, running_grapes

from e2e.failover import MATCHER_FAULT, FailoverRig, Load, sqlite_rig
from e2e.harness import PYTHON, REPO, Exchange, Proc, _env
from e2e.standby import READY, TAKING_OVER, HeadWatch, MatcherPair, TakenVersions, applied_head
from exchange.sequencer import Journal

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def check_taken(
    watcher: TakenVersions, exchange: Exchange, *, may_err: Sequence[Proc] = ()
) -> None:
    """The watcher reached the journal's head through linked versions, each the oracle's
    book at its seq; no worker (but those of `may_err`) logged an error."""
    with Journal(exchange.journal) as journal:
        entries = [(e.seq, e.ts, dict(e.wire)) for e in journal.entries()]
    watcher.wait_seq(len(entries))
    watcher.check_chain()
    hashes = reference_books(entries, {t.seq for t in watcher.taken}, Counter())
    for taken in watcher.taken:
        assert taken.book == hashes[taken.seq], f"at seq {taken.seq}: {taken.book}"
    for proc in [p for p in exchange.procs if p not in may_err]:
        bad = [line for line in proc.text().splitlines() if " ERROR " in line
               or " CRITICAL " in line or line.startswith("Traceback")]  # fmt: skip
        assert not bad, f"{proc.log.name}: {bad}"


def test_the_standby_takes_over_from_a_killed_matcher(tmp_path: Path) -> None:
    with sqlite_rig(tmp_path) as rig, TakenVersions(rig.exchange.grapes[0]) as watcher:
        with rig.load(clients=4, seed=18) as load:
            assert rig.heads is not None
            rig.heads.first_beyond(20, 0.0)  # the active matcher at work
            for _ in range(2):
                load.wait_acked(load.acked() + 30)
                fault = rig.inject(MATCHER_FAULT, load)  # the next version seen, a new standby
                assert fault.recovery_s is not None
            load.wait_acked(load.acked() + 30)
        counts = rig.check(load)  # acknowledged = journaled = applied, replica = dex replay
        check_taken(watcher, rig.exchange)
        assert rig.matchers is not None
        assert rig.matchers.takeovers == 2
    assert counts["lost"] == counts["duplicated"] == 0
    print(f"\nmatcher killed: next version in {[f.recovery_s for f in rig.faults]} s")


GIVE_UP_AFTER = 2.0


def test_the_standby_takes_over_when_the_active_matchers_grape_dies(tmp_path: Path) -> None:
    with ExitStack() as stack:
        grapes = stack.enter_context(running_grapes(3))
        exchange = Exchange([g.url for g in grapes], tmp_path)
        stack.callback(exchange.close)
        # The sequencer and the clients on grape 0, the active matcher on grape 1, the
        # standby on grape 2; both give up being active after 2 s of failed puts.
        pair = MatcherPair(exchange, grapes=(1, 2), extra=("--give-up-after", str(GIVE_UP_AFTER)))
        pair.start()
        exchange.start_submit(timeout=60)
        heads = stack.enter_context(HeadWatch(exchange.grapes[0]))
        watcher = stack.enter_context(TakenVersions(exchange.grapes[0]))
        load = Load([exchange.grapes[0], exchange.grapes[2]], clients=2, seed=19)
        load.start()
        try:
            heads.first_beyond(20, 0.0)  # the active matcher works
            active = pair.active
            killed_at = time.time()
            os.kill(grapes[1].pid, SIGKILL)
            pair.gone(active)  # it gives up: its puts fail for 2 s
            gave_up_after = time.time() - killed_at
            head = applied_head(exchange.process_db)
            # As an operator would (and as soon): the dead grape started again. Until
            # then every put through the others waits for it (about 2 s each).
            grapes[1] = stack.enter_context(restarted_grape(grapes[1], [grapes[0], grapes[2]]))
            seen_at = heads.first_beyond(head, killed_at)
            taker = pair.wait_taken_over()
            load.wait_acked(load.acked() + 30)
        finally:
            load.stop()
        counts = FailoverRig([], exchange, 0.0).check(load)
        check_taken(watcher, exchange, may_err=[active])
    assert active.popen.returncode == 1, active.text()
    assert "storing versions has failed for" in active.text()
    assert f"{TAKING_OVER} {head}" in taker.text()
    assert counts["lost"] == counts["duplicated"] == 0
    assert gave_up_after >= GIVE_UP_AFTER  # its puts failed from the kill on: not before
    recovery = seen_at - killed_at
    print(f"\ngrape killed: gave up in {gave_up_after:.2f} s, next version in {recovery:.2f} s")


def dex(*words: str) -> tuple[int, Any]:
    """`dex ... --json` run as its own process: its exit status and what it printed."""
    proc = subprocess.run(
        [PYTHON, "-m", "exchange.tools", *words, "--json"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_a_start_from_a_snapshot_gives_the_book_of_a_replay_from_zero(tmp_path: Path) -> None:
    with running_grapes(2) as grapes, ExitStack() as stack:
        exchange = Exchange([g.url for g in grapes], tmp_path)
        stack.callback(exchange.close)
        pair = MatcherPair(exchange, extra=("--snapshot-every", "40"))
        pair.start()
        exchange.start_submit(timeout=60)
        rig = FailoverRig([], exchange, 0.0)
        with rig.load(clients=2, seed=20) as load:
            load.wait_acked(150)
        with Journal(exchange.journal) as journal:
            head = journal.head()
        rig.wait_applied(head, 60)
        # The real worker's files: every snapshot usable, each the replay of the journal.
        status, listed = dex("snapshot", "--db", str(exchange.process_db))
        assert status == 0, listed
        seqs = [s["seq"] for s in listed]
        assert len(seqs) >= 2, listed
        assert all(s["ok"] for s in listed), listed
        for seq in seqs:
            status, checked = dex(
                "snapshot", "--db", str(exchange.process_db), "--check", str(seq),
                "--journal", str(exchange.journal),
            )  # fmt: skip
            assert (status, checked["ok"]) == (0, True), checked
            assert "= the replay of the journal" in checked["detail"], checked
        # Both matchers gone; a new one starts from the newest snapshot plus the tail.
        for proc in list(pair.procs):
            proc.kill9()
        restarted = exchange.spawn("process", pair.procs[0].argv)
        restarted.wait_for_text(READY, 60)
        assert f"starting from snapshot {max(seqs)} " in restarted.text(), restarted.text()
        replayed = exchange.replay()  # `dex replay`: from zero
        watched = exchange.watch_once("after-restart")
        assert (watched.done["seq"], watched.done["book"]) == (head, replayed["book"])
        assert replayed["seq"] == head
