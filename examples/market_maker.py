"""A market maker: a client that keeps two-sided quotes and re-quotes as it is filled.

Run: `.venv/bin/python examples/market_maker.py`
  the whole exchange in one process (memory transport): the two workers, the maker and
  a taker that trades against it; exits 0 once every replica agrees with the journal.
Or: `.venv/bin/python examples/market_maker.py --grape http://127.0.0.1:30001`
  joins the exchange of the run book (README) as client ``maker`` and quotes until
  Ctrl-C (or ``--seconds``), then cancels its quotes (needs the grenache extra).

It uses only what `exchange` exports (`ClientNode`, the workers, `replay_journal`) and
the public names of `orderbook_core` and `transports`. The maker's view of the market is
its `ClientNode`'s replica, moved only by verified versions; its fills come from the
same versions, so after a fill it re-quotes around a mid skewed against its position:
long, it lowers both sides to sell; short, it raises them to buy back.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange import ClientNode, Journal, OrderRefused, ProcessWorker, SubmitWorker, replay_journal
from exchange.client import NotAcknowledged
from orderbook_core import DEFAULT_SPEC, MarketSpec, RestingOrder, Side
from transports import JSON, MemoryNetwork, Transport, open_transport

Say = Callable[[str], None]


@dataclass(frozen=True)
class QuotePlan:
    """Where to quote, in the market's units.

    Attributes:
        mid: the fair price with no position.
        half_spread: distance from the (skewed) mid to the best bid and ask.
        step: distance between levels on one side.
        levels: quotes per side.
        size: amount of each quote.
        skew: how far the mid moves against one ``size`` of position.
        max_position: stop quoting the side that would grow the position past this.
    """

    mid: Decimal = Decimal("100.00")
    half_spread: Decimal = Decimal("0.10")
    step: Decimal = Decimal("0.10")
    levels: int = 2
    size: Decimal = Decimal("1")
    skew: Decimal = Decimal("0.05")
    max_position: Decimal = Decimal("5")


class MarketMaker:
    """Quotes on both sides through a `ClientNode`, and re-quotes after every fill.

    Args:
        transport: the maker's own transport (its node serves on it).
        plan: where to quote.
        client_id: the maker's client id.
        spec: the market.
        say: where to report quotes and fills (print by default).
    """

    def __init__(
        self,
        transport: Transport,
        plan: QuotePlan,
        *,
        client_id: str = "maker",
        spec: MarketSpec = DEFAULT_SPEC,
        say: Say = print,
    ) -> None:
        self.plan = plan
        self.spec = spec
        self.say = say
        self.node = ClientNode(transport, client_id, spec, emit=self._on_record)
        self.quoted_seq = 0
        """The replica's sequence number when the last re-quote was complete."""
        self._fills_in, self._fills_out = anyio.create_memory_object_stream[JSON](math.inf)
        self._fills_seen = 0  # fills the node reported
        self._fills_handled = 0  # fills a finished or running re-quote took into account
        self._requoting = False
        self._quoted = anyio.Event()

    # ------------------------------------------------------------------ the position

    def position(self) -> int:
        """Lots bought minus lots sold, from the fills in the verified versions."""
        lots = 0
        for trade in self.node.fills:
            taker = trade.taker_client_id == self.node.client_id
            bought = (trade.taker_side is Side.BUY) == taker
            lots += trade.amount if bought else -trade.amount
        return lots

    def cash(self) -> Decimal:
        """Money received minus money paid for those fills."""
        total = Decimal(0)
        for trade in self.node.fills:
            taker = trade.taker_client_id == self.node.client_id
            bought = (trade.taker_side is Side.BUY) == taker
            value = self.spec.ticks_to_price(trade.price) * self.spec.lots_to_amount(trade.amount)
            total += -value if bought else value
        return total

    def desired(self) -> set[tuple[Side, int]]:
        """The (side, price in ticks) of every quote the plan wants now."""
        spec, plan = self.spec, self.plan
        size = spec.amount_to_lots(plan.size)
        position = self.position()
        skew = spec.price_to_ticks(plan.skew) * position // size
        mid = spec.price_to_ticks(plan.mid) - skew
        half, step = spec.price_to_ticks(plan.half_spread), spec.price_to_ticks(plan.step)
        limit = spec.amount_to_lots(plan.max_position)
        quotes: set[tuple[Side, int]] = set()
        for level in range(plan.levels):
            if position < limit:
                quotes.add((Side.BUY, mid - half - level * step))
            if position > -limit:
                quotes.add((Side.SELL, mid + half + level * step))
        return {(side, price) for side, price in quotes if price >= spec.min_ticks}

    # ------------------------------------------------------------------ quoting

    def _on_record(self, record: JSON) -> None:
        """The node's records: a fill of ours wakes the quoting loop."""
        if isinstance(record, dict) and record.get("event") == "fill":
            self._fills_seen += 1
            self._fills_in.send_nowait(record)

    async def _submit_all(self, payloads: list[dict[str, JSON]]) -> int:
        """Submit `payloads` at once (one ``submit_order`` batch: the node coalesces
        what is in flight), in order; the highest seq taken (0: none)."""
        last = 0
        for answer in await self.node.submit_many(payloads):
            if isinstance(answer, NotAcknowledged):
                raise answer
            if isinstance(answer, OrderRefused):  # e.g. the market's limits: keep quoting
                self.say(f"refused: {answer}")
            else:
                last = max(last, answer.seq)
        return last

    async def requote(self) -> None:
        """Cancel the quotes the plan no longer wants, place the missing ones, and wait
        until the replica shows the result. Quotes are post-only: a maker never takes."""
        self._requoting = True
        wanted = self.desired()
        resting = {(o.side, o.price): o for o in self.node.own_orders()}
        # The cancels first, then the new quotes: one batch, numbered in this order.
        payloads: list[dict[str, JSON]] = [
            {"op": "cancel", "orderId": order.order_id}
            for (side, price), order in resting.items()
            if (side, price) not in wanted
        ]
        for side, price in sorted(wanted - resting.keys()):
            payloads.append(
                {
                    "side": side.value,
                    "price": str(self.spec.ticks_to_price(price)),
                    "amount": str(self.plan.size),
                    "postOnly": True,
                }
            )
        last = await self._submit_all(payloads)
        if last:
            await self.node.wait_for_seq(last)
        self.quoted_seq = max(self.quoted_seq, last, self.node.replica.seq)
        self._requoting = False
        self._quoted.set()
        self._quoted = anyio.Event()
        self.say(f"quotes: {self.describe()}")

    def describe(self) -> str:
        """The maker's resting quotes, best first, and its position."""
        orders = self.node.own_orders()
        bids = [o for o in orders if o.side is Side.BUY]
        asks = [o for o in orders if o.side is Side.SELL]

        def show(side: list[RestingOrder]) -> str:
            quotes = [
                f"{self.spec.ticks_to_price(o.price)}x{self.amount(o.remaining)}" for o in side
            ]
            return " ".join(quotes) or "-"

        return f"bids {show(bids)} | asks {show(asks)} | position {self.amount(self.position())}"

    def amount(self, lots: int) -> str:
        """`lots` as an amount without trailing zeros, for reports."""
        return format(self.spec.lots_to_amount(lots).normalize(), "f")

    async def wait_quoted(self, seq: int) -> None:
        """Return once the quotes take into account every fill up to sequence number
        `seq` (and every fill reported so far)."""
        while self.quoted_seq < seq or self._fills_handled < self._fills_seen or self._requoting:
            await self._quoted.wait()

    async def quote(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Quote, then re-quote after each batch of fills, until cancelled (the node must
        be running: see `run`)."""
        await self.requote()
        task_status.started()
        async for fill in self._fills_out:
            while True:  # take every fill already reported, then re-quote once
                self._fills_handled += 1
                self.say(
                    f"fill: {fill['role']} {fill['side']} {fill['amount']} @ {fill['price']}"
                    f" with {fill['counterparty']}"
                )
                try:
                    fill = self._fills_out.receive_nowait()
                except anyio.WouldBlock:
                    break
            await self.requote()

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Run the node and `quote`, until cancelled."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.node.run)
            await tg.start(self.quote)
            task_status.started()

    async def withdraw(self) -> None:
        """Cancel every resting quote; return once the replica, as of the matcher's
        latest version, shows none (a submit cut short may land late)."""
        while True:
            head = await self.node.fetch_head()
            await self.node.wait_for_seq(head.seq)
            orders = self.node.own_orders()
            if not orders:
                return
            last = await self._submit_all(
                [{"op": "cancel", "orderId": order.order_id} for order in orders]
            )
            if last:
                await self.node.wait_for_seq(last)


# ---------------------------------------------------------------------- the two modes


async def in_one_process(workdir: Path, say: Say = print) -> bool:
    """The whole exchange on one memory network: workers, the maker, a taker.

    Returns:
        Whether every replica holds the book replayed from the journal and the maker
        quotes exactly what its plan wants.
    """
    network = MemoryNetwork()
    sequencer_key = Ed25519PrivateKey.generate()  # signs process_order; the matcher takes no other
    with Journal(workdir / "journal.sqlite") as journal, anyio.fail_after(60):
        async with (
            open_transport("memory", network=network) as submit_net,
            open_transport("memory", network=network) as process_net,
            open_transport("memory", network=network) as maker_net,
            open_transport("memory", network=network) as taker_net,
            anyio.create_task_group() as tg,
        ):
            await tg.start(
                ProcessWorker(
                    process_net,
                    workdir / "process.sqlite",
                    sequencer_key=sequencer_key.public_key(),
                    signing_key=Ed25519PrivateKey.generate(),
                ).run
            )
            await tg.start(SubmitWorker(submit_net, journal, signing_key=sequencer_key).run)
            maker = MarketMaker(maker_net, QuotePlan(), say=say)
            await tg.start(maker.run)
            taker = ClientNode(taker_net, "taker")
            await tg.start(taker.run)

            for side, amount in (("buy", "1.5"), ("sell", "3"), ("buy", "0.5")):
                say(f"taker: market {side} {amount}")
                market: dict[str, JSON] = {"side": side, "ordType": "market", "amount": amount}
                seq = (await taker.submit(market)).seq
                await maker.wait_quoted(seq)

            await taker.wait_for_seq(maker.quoted_seq)
            replay = await anyio.to_thread.run_sync(replay_journal, journal.path)
            quoting = {(o.side, o.price) for o in maker.node.own_orders()} == maker.desired()
            agree = maker.node.book_hash == taker.book_hash == replay.book_hash
            cash = format(maker.cash().normalize(), "f")
            say(f"maker position {maker.amount(maker.position())}, cash {cash}")
            say(f"replicas and journal replay agree: {agree}; maker quotes its plan: {quoting}")
            tg.cancel_scope.cancel()
    return agree and quoting


async def join(grape: str, seconds: float | None, say: Say = print) -> None:
    """Quote on a running exchange until SIGINT/SIGTERM (or `seconds`), then withdraw."""
    async with (
        open_transport("grenache", grape=grape) as transport,
        anyio.create_task_group() as tg,
    ):
        maker = MarketMaker(transport, QuotePlan(), say=say)
        await tg.start(maker.node.run)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as quoting:
                quoting.start_soon(maker.quote)
                with anyio.move_on_after(math.inf if seconds is None else seconds):
                    async for _ in signals:
                        break
                quoting.cancel_scope.cancel()
        say("withdrawing quotes")
        with anyio.fail_after(30):
            await maker.withdraw()
        say(f"done: {maker.describe()}")
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A market maker on the exchange.")
    parser.add_argument("--grape", help="join the exchange on this grape (default: in-process)")
    parser.add_argument("--seconds", type=float, help="with --grape: quote this long")
    args = parser.parse_args(argv)
    if args.grape:
        anyio.run(join, args.grape, args.seconds, partial(print, flush=True))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        return 0 if anyio.run(in_one_process, Path(tmp)) else 1


if __name__ == "__main__":
    sys.exit(main())
