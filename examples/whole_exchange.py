"""The whole exchange in one process, wired by hand: both workers and two clients.

Run: `.venv/bin/python examples/whole_exchange.py`

Every part gets its own transport on one `MemoryNetwork`; swap `open_transport("memory",
network=...)` for `open_transport("grenache", grape="http://127.0.0.1:30001")` and the
same objects run on real grapes (that is all `bin/*.py` do). `dex demo` is the longer,
checked version of this example (`exchange/demo.py`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.client import ClientNode
from exchange.matcher import ProcessWorker
from exchange.sequencer import Journal, SubmitWorker
from exchange.tools import replay_journal
from transports import MemoryNetwork, open_transport


async def main(workdir: Path) -> None:
    network = MemoryNetwork()
    # The sequencer signs what it sends the matcher; the matcher takes only its key.
    sequencer_key = Ed25519PrivateKey.generate()
    with Journal(workdir / "journal.sqlite") as journal:
        async with (
            open_transport("memory", network=network) as submit_net,
            open_transport("memory", network=network) as process_net,
            open_transport("memory", network=network) as alice_net,
            open_transport("memory", network=network) as bob_net,
            anyio.create_task_group() as tg,
        ):
            # The sequencer and the matcher, each serving its names.
            await tg.start(
                ProcessWorker(
                    process_net,
                    workdir / "process.sqlite",
                    sequencer_key=sequencer_key.public_key(),
                    signing_key=Ed25519PrivateKey.generate(),
                ).run
            )
            await tg.start(SubmitWorker(submit_net, journal, signing_key=sequencer_key).run)

            # Two clients, each with its own replica; alice prints what she sees.
            alice = ClientNode(alice_net, "alice", emit=lambda r: print("alice sees", r))
            bob = ClientNode(bob_net, "bob")
            await tg.start(alice.run)
            await tg.start(bob.run)

            ask = await alice.submit({"type": "Sell", "price": "100", "amount": "2"})
            bid = await bob.submit({"type": "Buy", "price": "100.5", "amount": "0.5"})
            print("sequenced as", ask.seq, "and", bid.seq)

            for node in (alice, bob):
                await node.wait_for_seq(bid.seq)
            print("alice's fills:", [(t.trade_id, t.amount) for t in alice.fills])
            print("alice's resting orders:", alice.own_orders())

            replay = await anyio.to_thread.run_sync(replay_journal, journal.path)
            assert alice.book_hash == bob.book_hash == replay.book_hash
            print("both replicas hold the replayed book", replay.book_hash)
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, Path(tmp))
