"""Signed orders at the sequencer: trust on first use, then the bound key only."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.keys import SEQUENCER_KEY, client_key, named_key, signed

from exchange.protocol import public_key_hex, sign_order
from exchange.sequencer import Journal, SubmitWorker
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio

ALICE = client_key("alice")
MALLORY = named_key("mallory")


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[Transport, Journal]]:
    network = MemoryNetwork()
    with Journal(tmp_path / "journal.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, max_backoff=0.2, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            yield client, journal
            tg.cancel_scope.cancel()


def new(order_id: str = "a1", client: str = "alice") -> dict[str, Any]:
    return {"clientId": client, "orderId": order_id, "side": "buy", "price": "100", "amount": "1"}


async def refused(client: Transport, payload: Any) -> str:
    with pytest.raises(RemoteError) as info:
        await client.request("submit_order", payload, timeout=5)
    return info.value.message


async def test_the_first_command_binds_the_client_id_to_its_key(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, journal):
        reply = await client.request("submit_order", sign_order(new(), ALICE), timeout=5)
        assert reply == {"seq": 1, "orderId": "a1"}
        assert journal.client_keys() == {"alice": public_key_hex(ALICE)}


async def test_a_cancel_signed_by_another_key_is_refused_and_stores_nothing(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as (client, journal):
        await client.request("submit_order", sign_order(new(), ALICE), timeout=5)
        forged = sign_order({"op": "cancel", "clientId": "alice", "orderId": "a1"}, MALLORY)
        message = await refused(client, forged)
        assert message.startswith("ERR_AUTH: sig: clientId 'alice' is bound to another key")
        assert journal.head() == 1
        assert journal.client_keys() == {"alice": public_key_hex(ALICE)}


@pytest.mark.parametrize(
    "payload",
    [
        {"op": "cancel", "clientId": "alice", "orderId": "a1"},  # unsigned
        None,
        "cancel",
        {**sign_order(new(), ALICE), "sig": "00" * 64},  # a signature that is not one
        {**sign_order(new(), ALICE), "sig": "zz"},
        {**sign_order(new(), ALICE), "pubKey": public_key_hex(MALLORY)},  # key swapped
        {**sign_order(new(), ALICE), "pubKey": "ab"},
    ],
)
async def test_unsigned_and_badly_signed_payloads_are_refused(tmp_path: Path, payload: Any) -> None:
    async with running(tmp_path) as (client, journal):
        assert (await refused(client, payload)).startswith("ERR_AUTH: ")
        assert journal.head() == 0
        assert journal.client_keys() == {}


async def test_a_signature_replayed_on_another_command_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, journal):
        first = sign_order(new(), ALICE)
        await client.request("submit_order", first, timeout=5)
        cancel = signed({"op": "cancel", "clientId": "alice", "orderId": "a1"})
        for replayed in (
            {**cancel, "sig": first["sig"]},  # the order's signature on a cancel
            {**first, "orderId": "a2"},  # the same order under another id
            {**first, "price": "99"},
        ):
            assert (await refused(client, replayed)).startswith("ERR_AUTH: sig: not a valid")
        assert journal.head() == 1


async def test_the_same_signed_order_replayed_is_a_repeat(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, journal):
        payload = sign_order(new(), ALICE)
        first = await client.request("submit_order", payload, timeout=5)
        assert await client.request("submit_order", payload, timeout=5) == first
        assert journal.head() == 1


async def test_a_new_order_must_name_its_order_id(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, journal):
        payload = sign_order({k: v for k, v in new().items() if k != "orderId"}, ALICE)
        assert (await refused(client, payload)).startswith("ERR_AUTH: orderId: required")
        assert journal.head() == 0


async def test_bindings_survive_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, _journal):
        await client.request("submit_order", sign_order(new(), ALICE), timeout=5)
    async with running(tmp_path) as (client, journal):
        message = await refused(client, sign_order(new("a2"), MALLORY))
        assert message.startswith("ERR_AUTH: ")
        await client.request("submit_order", sign_order(new("a3"), ALICE), timeout=5)
        assert journal.head() == 2


async def test_two_first_commands_with_different_keys_bind_one_key(tmp_path: Path) -> None:
    async with running(tmp_path) as (client, journal):
        results: list[str] = []
        refusals: list[str] = []

        async def submit(key_name: str, order_id: str) -> None:
            try:
                await client.request(
                    "submit_order", sign_order(new(order_id, "bob"), named_key(key_name)), timeout=5
                )
                results.append(key_name)
            except RemoteError as exc:
                refusals.append(exc.message)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(submit, f"k{i}", f"b{i}")
        assert len(results) == 1
        assert len(refusals) == 9
        assert all(m.startswith("ERR_AUTH: ") for m in refusals)
        assert journal.client_keys() == {"bob": public_key_hex(named_key(results[0]))}
        assert journal.head() == 1


class _FailingOnce(Journal):
    """Fails its next append, as a full disk would."""

    fail = 0

    def append(self, entries: Any, bindings: Any = None, requests: Any = None) -> None:
        if self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().append(entries, bindings, requests)


async def test_a_binding_whose_commit_failed_binds_nothing(tmp_path: Path) -> None:
    network = MemoryNetwork()
    with _FailingOnce(tmp_path / "journal.db") as journal:
        async with (
            open_transport("memory", network=network) as server,
            open_transport("memory", network=network) as client,
            anyio.create_task_group() as tg,
        ):
            worker = SubmitWorker(server, journal, max_backoff=0.2, signing_key=SEQUENCER_KEY)
            await tg.start(worker.run)
            journal.fail = 1
            message = await refused(client, sign_order(new(), MALLORY))
            assert message.startswith("ERR_UNAVAILABLE: ")
            assert journal.client_keys() == {}
            # Nothing was stored, so the clientId is still free: its real owner binds it.
            await client.request("submit_order", sign_order(new(), ALICE), timeout=5)
            assert journal.client_keys() == {"alice": public_key_hex(ALICE)}
            tg.cancel_scope.cancel()
