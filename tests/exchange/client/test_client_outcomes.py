"""What a trader sees of one command: its outcome, its exit status, nothing from before.

Both real workers on the memory transport; each client is `run_client` with ``--once``,
exactly as `bin/client` runs it.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from support.keys import MATCHER_KEY, SEQUENCER_KEY, named_key, signed_head

from exchange.client import PUSH_ONLY_ENV, parse_client_args, push_only_following, run_client
from exchange.matcher import ProcessWorker
from exchange.protocol import public_key_hex
from exchange.runtime import (
    EXIT_FAILED,
    EXIT_NOT_CONFIRMED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNTRUSTED,
    EXIT_USAGE,
)
from exchange.sequencer import Journal, SubmitWorker
from orderbook_core import DEFAULT_SPEC
from transports import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def exchange(
    tmp_path: Path,
    *,
    matcher_key: Ed25519PrivateKey = MATCHER_KEY,
    sequencer_key: Ed25519PrivateKey = SEQUENCER_KEY,
) -> AsyncIterator[MemoryNetwork]:
    network = MemoryNetwork(seed=3)
    await anyio.Path(tmp_path).mkdir(parents=True, exist_ok=True)
    with Journal(tmp_path / "journal.sqlite") as journal:
        async with (
            MemoryTransport(network) as submit_t,
            MemoryTransport(network) as process_t,
            anyio.create_task_group() as tg,
        ):
            await tg.start(
                ProcessWorker(
                    process_t,
                    tmp_path / "process.sqlite",
                    DEFAULT_SPEC,
                    sequencer_key=sequencer_key.public_key(),
                    signing_key=matcher_key,
                ).run
            )
            await tg.start(
                SubmitWorker(submit_t, journal, DEFAULT_SPEC, signing_key=sequencer_key).run
            )
            yield network
            tg.cancel_scope.cancel()


async def client(network: MemoryNetwork, *words: str) -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    args = parse_client_args([*words, "--once", "--json", "--timeout=10"])
    async with MemoryTransport(network) as transport:
        status = await run_client(args, transport, out, head_interval=0.05)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


async def text_client(network: MemoryNetwork, *words: str) -> tuple[int, str]:
    out = io.StringIO()
    args = parse_client_args([*words, "--once", "--timeout=10"])
    async with MemoryTransport(network) as transport:
        status = await run_client(args, transport, out, head_interval=0.05)
    return status, out.getvalue()


def kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["event"] for r in records]


async def test_cancel_of_an_unknown_order_exits_4_and_says_so(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        status, text = await text_client(network, "clientId=c1", "op=cancel", "orderId=nope")
    assert status == EXIT_REJECTED
    assert "cancel of nope sent: journaled by the sequencer as seq 1" in text
    assert "order nope" not in text  # a cancel is worded as a cancel
    assert "cancel of nope failed: no resting order of yours has this id" in text
    assert text.splitlines()[-1].startswith("[c1] done: cancel of nope failed")


async def test_cancel_of_another_clients_order_exits_4(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        status, _ = await client(
            network, "clientId=alice", "type=Sell", "amount=1", "price=100", "orderId=a1"
        )
        assert status == EXIT_OK
        status, records = await client(network, "clientId=mallory", "op=cancel", "orderId=a1")
    assert status == EXIT_REJECTED
    rejected = next(r for r in records if r["event"] == "rejected")
    assert rejected["reason"] == "ERR_ORDER_UNKNOWN"
    assert rejected["op"] == "cancel"
    assert "failed" in records[-1]["outcome"]


async def test_a_post_only_order_that_would_cross_exits_4(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        await client(network, "clientId=alice", "type=Sell", "amount=1", "price=100")
        status, records = await client(
            network, "clientId=bob", "type=Buy", "amount=1", "price=100", "postOnly=true"
        )
    assert status == EXIT_REJECTED
    assert records[-1]["event"] == "done"
    assert "ERR_EXEC_POST_ONLY_WOULD_CROSS" in records[-1]["outcome"]


async def test_a_successful_cancel_exits_0_and_says_cancelled(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        await client(network, "clientId=alice", "type=Sell", "amount=2", "price=100", "orderId=a1")
        status, records = await client(network, "clientId=alice", "op=cancel", "orderId=a1")
    assert status == EXIT_OK
    assert records[-1]["outcome"] == "cancelled a1: 2.000 taken off the book"


async def test_a_once_run_does_not_reprint_earlier_events(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        await client(network, "clientId=alice", "type=Sell", "amount=2", "price=100", "orderId=a1")
        await client(network, "clientId=bob", "type=Buy", "amount=1", "price=100")
        status, records = await client(
            network, "clientId=alice", "type=Sell", "amount=1", "price=101", "orderId=a2"
        )
    assert status == EXIT_OK
    own = [r for r in records if r["event"] in ("accepted", "rested", "fill")]
    assert own, records
    assert {r["orderId"] for r in own} == {"a2"}  # not a1, nor a1's fill at seq 2
    assert all(r["seq"] == 3 for r in own)
    # The resting orders are state, not events: both are listed.
    orders = [r for r in records if r["event"] == "orders"][-1]["orders"]
    assert {o["orderId"] for o in orders} == {"a1", "a2"}
    assert records[-1]["outcome"] == "order a2: 1.000 resting at 101.00"


async def test_the_first_version_is_not_called_incomplete(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        for i in range(40):  # more versions than a client walks back at start
            await client(network, f"clientId=c{i}", "type=Sell", "amount=1", f"price={100 + i}")
        _, records = await client(network, "clientId=late")
    books = [r for r in records if r["event"] == "book"]
    assert books
    assert books[0]["complete"] is True


async def test_reserved_order_ids_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    args = parse_client_args(
        ["clientId=c1", "type=Buy", "amount=1", "price=1", "orderId=_7", "--once"]
    )
    async with MemoryTransport(MemoryNetwork()) as transport:
        assert await run_client(args, transport, io.StringIO()) == EXIT_USAGE


async def test_text_mode_prints_the_tape(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        await client(network, "clientId=alice", "type=Sell", "amount=2", "price=100")
        status, text = await text_client(
            network, "clientId=bob", "type=Buy", "amount=1", "price=100"
        )
    assert status == EXIT_OK
    assert "trade 2.1: 1.000 @ 100.00 (buy taker)" in text
    assert "bought 1.000 @ 100.00 (taker, against alice)" in text


async def test_the_live_view_draws_the_market_and_the_outcome(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        await client(network, "clientId=alice", "type=Sell", "amount=2", "price=100.5")
        await client(network, "clientId=carol", "type=Buy", "amount=3", "price=99")
        out = io.StringIO()
        console = Console(file=out, width=100, height=40, force_terminal=False, record=True)
        args = parse_client_args(["clientId=bob", "type=Buy", "amount=1", "price=100.5", "--once"])
        async with MemoryTransport(network) as transport:
            status = await run_client(
                args, transport, out, head_interval=0.05, view=True, console=console
            )
    assert status == EXIT_OK
    screen = console.export_text()
    assert "BTC-USD  bob  v3" in screen
    assert "ask" in screen
    assert "bid" in screen
    assert "99.00" in screen
    assert "100.50" in screen
    assert "order bob-" in screen
    assert "filled 1.000" in screen
    assert "lag 0" in screen


async def test_the_program_signs_with_a_key_file_made_on_first_use(
    tmp_path: Path, client_key_dir: Path
) -> None:
    key_file = client_key_dir / "signer.key"
    async with exchange(tmp_path) as network:
        status, _ = await client(network, "clientId=signer", "type=Buy", "amount=1", "price=9")
        assert status == EXIT_OK
        assert key_file.stat().st_mode & 0o777 == 0o600
        made = key_file.read_bytes()
        # The same key next time: the clientId is bound to it, so this is accepted too.
        status, _ = await client(network, "clientId=signer", "type=Buy", "amount=1", "price=8")
        assert status == EXIT_OK
        assert key_file.read_bytes() == made
        # The matcher key it saw first is recorded: later runs trust that one only.
        known = client_key_dir / "known" / "matchers" / f"{public_key_hex(SEQUENCER_KEY)}.pub"
        assert known.read_text() == public_key_hex(MATCHER_KEY) + "\n"
        # Another key (--key-file elsewhere) may not act for that clientId.
        status, records = await client(
            network,
            "clientId=signer",
            "type=Buy",
            "amount=1",
            "price=7",
            f"--key-file={tmp_path / 'other.key'}",
        )
        assert status == EXIT_FAILED
        assert records[-1]["event"] == "refused", records
        assert records[-1]["error"].startswith("ERR_AUTH: ")


async def test_a_fresh_exchange_is_a_new_instance_taken_with_a_notice(
    tmp_path: Path, client_key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16, friction 1: one key directory, the exchange reset with new keys (``make
    clean``); the client used to refuse the new matcher's heads, submit anyway and time
    out. Each exchange instance has its own pinned matcher key."""
    async with exchange(tmp_path / "one") as network:
        status, _ = await client(network, "clientId=c1", "type=Buy", "amount=1", "price=9")
    assert status == EXIT_OK
    first = capsys.readouterr().err
    async with exchange(
        tmp_path / "two", matcher_key=named_key("matcher-2"), sequencer_key=named_key("seq-2")
    ) as network:
        status, records = await client(network, "clientId=c1", "type=Buy", "amount=1", "price=9")
        assert status == EXIT_OK, records
        again, _ = await client(network, "clientId=c1", "type=Buy", "amount=1", "price=8")
        assert again == EXIT_OK
    assert "client: new exchange" in first
    notices = [line for line in capsys.readouterr().err.splitlines() if "new exchange" in line]
    assert len(notices) == 1  # once per instance, not per run
    pinned = sorted(p.name for p in (client_key_dir / "known" / "matchers").iterdir())
    assert pinned == sorted(f"{public_key_hex(k)}.pub" for k in (SEQUENCER_KEY, named_key("seq-2")))


async def test_another_matcher_key_for_a_pinned_instance_is_refused_before_submitting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strangers are still refused: the same exchange instance (sequencer key) signed by
    another matcher key is not trusted, and nothing is submitted (exit 6, one line)."""
    async with exchange(tmp_path / "one") as network:
        assert (await client(network, "clientId=c1", "type=Buy", "amount=1", "price=9"))[0] == 0
    capsys.readouterr()
    async with exchange(tmp_path / "two", matcher_key=named_key("impostor")) as network:
        status, records = await client(network, "clientId=c1", "type=Buy", "amount=1", "price=9")
    assert status == EXIT_UNTRUSTED
    assert "submitted" not in kinds(records)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("client: order not submitted: matcher not trusted: ")
    assert "delete that file (or pass --matcher-key)" in line
    with Journal(tmp_path / "two" / "journal.sqlite") as journal:
        assert list(journal.entries()) == []


async def test_an_order_not_confirmed_in_time_exits_5_and_says_how_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16, friction 3: the order was journaled, but its outcome never showed (the
    matcher is stuck at seq 0): exit 5, not 1, with what to do."""
    network = MemoryNetwork(seed=3)

    async def stuck_head(_payload: object) -> object:
        return signed_head(0, None)

    with Journal(tmp_path / "journal.sqlite") as journal:
        async with (
            MemoryTransport(network) as submit_t,
            MemoryTransport(network) as head_t,
            anyio.create_task_group() as tg,
        ):
            await tg.start(head_t.serve, {"orderbook_head": stuck_head})
            await tg.start(
                SubmitWorker(submit_t, journal, DEFAULT_SPEC, signing_key=SEQUENCER_KEY).run
            )
            out = io.StringIO()
            words = ["clientId=c1", "orderId=o1", "type=Buy", "amount=1", "price=9"]
            args = parse_client_args([*words, "--once", "--json", "--timeout=1"])
            async with MemoryTransport(network) as transport:
                status = await run_client(args, transport, out, head_interval=0.05)
            tg.cancel_scope.cancel()
    assert status == EXIT_NOT_CONFIRMED
    notice, line = capsys.readouterr().err.splitlines()  # a new instance, then why
    assert notice.startswith("client: new exchange ")
    assert line.startswith("client: NOT CONFIRMED: new o1 was taken as seq 1 but not seen")
    assert "it may still execute" in line
    assert "`dex order c1 o1`" in line
    assert "resending the same command with orderId=o1 is safe" in line


async def test_modify_and_cancel_all(tmp_path: Path) -> None:
    async with exchange(tmp_path) as network:
        for order_id, price in (("a1", "100"), ("a2", "101"), ("a3", "102")):
            words = ["clientId=alice", f"orderId={order_id}", "type=Sell", "amount=2"]
            assert (await client(network, *words, f"price={price}"))[0] == EXIT_OK
        status, records = await client(
            network, "clientId=alice", "op=modify", "orderId=a1", "amount=1.5"
        )
        assert status == EXIT_OK
        assert records[-1]["outcome"] == "order a1: modified to 1.500 at 100.00"
        status, records = await client(network, "clientId=alice", "op=modify", "orderId=zz",
                                       "price=5")  # fmt: skip
        assert status == EXIT_REJECTED
        assert "rejected: no resting order of yours has this id" in records[-1]["outcome"]
        status, records = await client(network, "clientId=alice", "op=cancelAll")
        assert status == EXIT_OK
        assert records[-1]["outcome"] == "cancelAll: 3 of 3 resting orders cancelled"
        assert sorted(r["orderId"] for r in records if r["event"] == "cancelled") == [
            "a1", "a2", "a3"]  # fmt: skip
        status, records = await client(network, "clientId=alice", "op=cancelAll")
        assert (status, records[-1]["outcome"]) == (
            EXIT_OK, "cancelAll: 0 of 0 resting orders cancelled")  # fmt: skip


async def test_each_modify_run_is_its_own_request_and_a_retry_is_a_repeat(tmp_path: Path) -> None:
    """Issue 21: the client names each modify with a fresh requestId; given again, it is
    the same modify (answered with its first seq, applied once)."""
    async with exchange(tmp_path) as network:
        words = ["clientId=alice", "orderId=a1", "type=Sell", "amount=2", "price=100"]
        assert (await client(network, *words))[0] == EXIT_OK
        modify = ["clientId=alice", "op=modify", "orderId=a1"]
        runs = [await client(network, *modify, f"price={price}") for price in (101, 102)]
        runs += [await client(network, *modify, "price=103", "requestId=r1") for _ in range(2)]
        assert [status for status, _ in runs] == [EXIT_OK] * 4
        seqs = [r["seq"] for _, records in runs for r in records if r["event"] == "submitted"]
        assert seqs == [2, 3, 4, 4]
        status, records = await client(network, *modify, "price=99", "requestId=r1")
        assert status == EXIT_FAILED
        assert "ERR_VALIDATION: requestId: already used by another modify" in records[-1]["error"]
    with Journal(tmp_path / "journal.sqlite") as journal:
        assert journal.head() == 4


async def test_a_modify_not_confirmed_says_its_request_id_makes_a_resend_safe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    network = MemoryNetwork(seed=3)

    async def stuck_head(_payload: object) -> object:
        return signed_head(0, None)

    with Journal(tmp_path / "journal.sqlite") as journal:
        async with (
            MemoryTransport(network) as submit_t,
            MemoryTransport(network) as head_t,
            anyio.create_task_group() as tg,
        ):
            await tg.start(head_t.serve, {"orderbook_head": stuck_head})
            await tg.start(
                SubmitWorker(submit_t, journal, DEFAULT_SPEC, signing_key=SEQUENCER_KEY).run
            )
            lines = []
            for given in (["requestId=r7"], []):
                words = ["clientId=c1", "op=modify", "orderId=o1", "price=9", *given]
                args = parse_client_args([*words, "--once", "--json", "--timeout=1"])
                async with MemoryTransport(network) as transport:
                    status = await run_client(args, transport, io.StringIO(), head_interval=0.05)
                assert status == EXIT_NOT_CONFIRMED
                lines.append(capsys.readouterr().err.splitlines()[-1])
            tg.cancel_scope.cancel()
    assert lines[0].startswith("client: NOT CONFIRMED: modify o1 was taken as seq 1 but not")
    assert "`dex order c1 o1`" in lines[0]
    assert "resending the same modify with requestId=r7 is safe" in lines[0]
    generated = lines[1].split("resending the same modify with requestId=")[1].split()[0]
    assert generated.startswith("c1-m-")


def test_the_push_only_switch_drops_the_long_poll_and_the_plain_polls() -> None:
    assert push_only_following({}) == (1.0, 10_000)
    assert push_only_following({PUSH_ONLY_ENV: "0"}) == (1.0, 10_000)
    assert push_only_following({PUSH_ONLY_ENV: "1"}) == (3600.0, 0)
    with pytest.raises(ValueError, match=PUSH_ONLY_ENV):
        push_only_following({PUSH_ONLY_ENV: "yes"})
