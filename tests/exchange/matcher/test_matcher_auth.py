"""Only the sequencer feeds the matcher: process_order signed by its key, or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from support.keys import MATCHER_KEY, SEQUENCER_KEY, SEQUENCER_PUBLIC, by_sequencer, named_key

from exchange.matcher import ProcessWorker
from exchange.protocol import PROCESS_DOMAIN, sign_object
from transports import MemoryNetwork, RemoteError, Transport, open_transport

pytestmark = pytest.mark.anyio

COMMAND = {"op": "new", "clientId": "a", "orderId": "a1", "side": "buy", "ordType": "limit",
           "price": "1.00", "amount": "1.000", "tif": "GTC", "postOnly": False}  # fmt: skip
ENTRY = {"seq": 1, "ts": 5, "command": COMMAND}


async def _refused(client: Transport, payload: Any) -> str:
    with pytest.raises(RemoteError) as info:
        await client.request("process_order", payload, timeout=5)
    return info.value.message


async def test_only_the_sequencers_signature_is_taken(tmp_path: Path) -> None:
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server, tmp_path / "p.db", sequencer_key=SEQUENCER_PUBLIC, signing_key=MATCHER_KEY
        )
        await tg.start(worker.run)
        stranger = named_key("stranger")
        for forged in (
            ENTRY,
            {"entries": [ENTRY]},
            sign_object(PROCESS_DOMAIN, ENTRY, stranger),
            {**by_sequencer(ENTRY), "seq": 2},  # the sequencer's signature, another entry
            sign_object("dex-order/1", ENTRY, SEQUENCER_KEY),  # its key, another domain
        ):
            assert (await _refused(client, forged)).startswith("ERR_AUTH: ")
        assert (worker.head_seq, worker.head_root, len(worker.book)) == (0, None, 0)
        reply = await client.request("process_order", by_sequencer(ENTRY), timeout=5)
        assert reply["seq"] == 1
        tg.cancel_scope.cancel()


async def test_a_key_not_known_yet_refuses_until_it_is(tmp_path: Path) -> None:
    known: list[Ed25519PublicKey] = []
    network = MemoryNetwork()
    async with (
        open_transport("memory", network=network) as server,
        open_transport("memory", network=network) as client,
        anyio.create_task_group() as tg,
    ):
        worker = ProcessWorker(
            server,
            tmp_path / "p.db",
            sequencer_key=lambda: known[0] if known else None,
            signing_key=MATCHER_KEY,
        )
        await tg.start(worker.run)
        message = await _refused(client, by_sequencer(ENTRY))
        assert message == "ERR_AUTH: sig: the sequencer's key is not known yet"
        known.append(SEQUENCER_PUBLIC)  # the sequencer wrote its key file
        assert (await client.request("process_order", by_sequencer(ENTRY), timeout=5))["seq"] == 1
        known[0] = named_key("later").public_key()  # read once: a new file changes nothing
        payload = by_sequencer({**ENTRY, "seq": 2, "command": {**COMMAND, "orderId": "a2"}})
        assert (await client.request("process_order", payload, timeout=5))["seq"] == 2
        tg.cancel_scope.cancel()
