"""The whole exchange in one process, on the memory transport: `dex demo` / `make demo`.

Both workers and several clients run as tasks of one event loop, each with its own
`MemoryTransport` on one `MemoryNetwork` (so every message still goes through the
transport interface, JSON-encoded, exactly as on Grenache). The clients submit crossing
and resting orders concurrently, then each cancels one of its resting orders (found in
its own replica). The demo then waits until every replica has converged, prints the
trades and the book, replays the submit worker's journal through the core alone
(`dex replay`) and checks that every replica holds the replay's book hash at the
replay's sequence number. Any disagreement is a failure (exit status 1).

With ``--markets N`` (N > 1) it runs N markets, MKT1..MKTn, at once on the one network
(as markets share the grapes): each its own sequencer, journal, matcher and clients
trading ``--orders`` orders, each checked against its own replay, each result printed
(lines prefixed with the market), then a total line.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio
from anyio.abc import TaskGroup
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.client import ClientNode
from exchange.matcher import ProcessWorker
from exchange.protocol import OrderRefused
from exchange.sequencer import Journal, SubmitWorker
from exchange.tools._replay import ReplayResult, replay_journal
from exchange.tools._trades import trade_record
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook, Side
from transports import MemoryNetwork, open_transport

__all__ = [
    "DemoResult",
    "demo_market_names",
    "demo_orders",
    "run_demo",
    "run_demo_async",
    "run_markets_async",
]


@dataclass
class DemoResult:
    """What the demo saw: the replay, and each replica's (seq, book hash)."""

    replay: ReplayResult
    replicas: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    submitted: int = 0
    refused: int = 0

    @property
    def converged(self) -> bool:
        """Every replica holds the replay's sequence number and book hash."""
        want = (self.replay.seq, self.replay.book_hash)
        return bool(self.replicas) and all(got == want for got in self.replicas.values())


def demo_orders(clients: list[str], count: int, seed: int) -> list[dict[str, Any]]:
    """Deterministic `submit_order` payloads: bids around 99, asks around 101, some cross.

    Buys are priced 97..101 and sells 99..103, so roughly a third of the orders cross
    the spread and trade; one in six is IOC (it never rests).
    """
    rng = random.Random(seed)
    orders = []
    for i in range(count):
        client = clients[i % len(clients)]
        side = rng.choice(("buy", "sell"))
        price = 99 + rng.randint(-2, 2) if side == "buy" else 101 + rng.randint(-2, 2)
        order: dict[str, Any] = {
            "clientId": client,
            "orderId": f"{client}-{i + 1}",
            "side": side,
            "price": f"{price}.{rng.choice(('00', '50'))}",
            "amount": str(Decimal(rng.randint(1, 20)) / 4),
        }
        if rng.random() < 1 / 6:
            order["tif"] = "IOC"
        orders.append(order)
    return orders


async def run_demo_async(
    workdir: Path,
    *,
    clients: int = 4,
    orders: int = 24,
    seed: int = 7,
    say: Callable[[dict[str, Any]], None] = lambda _record: None,
    spec: MarketSpec = DEFAULT_SPEC,
    timeout: float = 20.0,
    network: MemoryNetwork | None = None,
) -> DemoResult:
    """Run the whole exchange in this event loop; return what it saw.

    Args:
        workdir: where the two SQLite files go.
        clients: how many clients (named client1..clientN).
        orders: how many orders they submit in all.
        seed: seeds the orders and the workers' randomness.
        say: receives progress records (``{"event": ...}``).
        spec: the market.
        timeout: seconds the whole run may take.
        network: the memory network to join (other markets' on it too); default a new one.

    Raises:
        TimeoutError: the replicas did not converge within `timeout`.
    """
    network = network if network is not None else MemoryNetwork(seed=seed)
    names = [f"client{i + 1}" for i in range(clients)]
    with anyio.fail_after(timeout), Journal(workdir / "journal.sqlite", spec) as journal:
        # Three nested task groups, stopped from the inside out: the clients, then the
        # submit worker (its forwarder would otherwise report the process worker gone,
        # "no peer serves process_order", while everything stops), then the process
        # worker.
        async with (
            open_transport("memory", network=network) as submit_net,
            open_transport("memory", network=network) as process_net,
            anyio.create_task_group() as process_tg,
        ):
            # One process: the sequencer's key is handed to the matcher in memory.
            sequencer_key = Ed25519PrivateKey.generate()
            process = ProcessWorker(
                process_net,
                workdir / "process.sqlite",
                spec,
                sequencer_key=sequencer_key.public_key(),
                signing_key=Ed25519PrivateKey.generate(),  # clients trust it on first use
            )
            await process_tg.start(process.run)
            async with anyio.create_task_group() as submit_tg:
                submit = SubmitWorker(
                    submit_net, journal, spec, seed=seed, signing_key=sequencer_key
                )
                await submit_tg.start(submit.run)
                async with anyio.create_task_group() as tg:
                    result = await _trade(tg, network, journal, names, orders, seed, say, spec)
                    tg.cancel_scope.cancel()
                submit_tg.cancel_scope.cancel()
            process_tg.cancel_scope.cancel()
    return result


def demo_market_names(count: int) -> list[str]:
    """The markets of ``dex demo --markets N``: the default market alone for 1 (the
    seed's names), else MKT1..MKTn."""
    if count == 1:
        return [DEFAULT_SPEC.market]
    return [f"MKT{i + 1}" for i in range(count)]


async def run_markets_async(
    workdir: Path,
    markets: list[str],
    *,
    clients: int = 4,
    orders: int = 24,
    seed: int = 7,
    say: Callable[[dict[str, Any]], None] = lambda _record: None,
    timeout: float = 20.0,
) -> dict[str, DemoResult]:
    """Run one whole exchange per market, all at once on one memory network; each
    market's `run_demo_async` (its `orders` and clients) in a directory of its own
    under `workdir`, market i's orders seeded with ``seed + i``. `say` receives every
    record with its ``market``.

    Raises:
        TimeoutError: some market's replicas did not converge within `timeout`.
    """
    network = MemoryNetwork(seed=seed)
    results: dict[str, DemoResult] = {}

    async def one(index: int, market: str) -> None:
        where = workdir / market
        where.mkdir(parents=True, exist_ok=True)
        results[market] = await run_demo_async(
            where,
            clients=clients,
            orders=orders,
            seed=seed + index,
            say=lambda record: say({**record, "market": market}),
            spec=replace(DEFAULT_SPEC, market=market),
            timeout=timeout,
            network=network,
        )

    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            for index, market in enumerate(markets):
                tg.start_soon(one, index, market)
    return {market: results[market] for market in markets}


async def _trade(
    tg: TaskGroup,
    network: MemoryNetwork,
    journal: Journal,
    names: list[str],
    orders: int,
    seed: int,
    say: Callable[[dict[str, Any]], None],
    spec: MarketSpec,
) -> DemoResult:
    """The clients' part: submit, cancel one each, wait for every replica, replay."""
    nodes = []
    for name in names:
        transport = open_transport("memory", network=network)
        node = ClientNode(transport, name, spec, head_interval=0.2)
        tg.start_soon(_run_node, node, transport)
        nodes.append(node)
    say({"event": "started", "clients": names, "transport": "memory"})

    result_counts = [0, 0]
    payloads = demo_orders(names, orders, seed)
    async with anyio.create_task_group() as clients_tg:
        for node in nodes:
            mine = [p for p in payloads if p["clientId"] == node.client_id]
            clients_tg.start_soon(_submit_all, node, mine, say, result_counts)
    # Each client cancels its oldest resting order, as seen in its own replica.
    for node in nodes:
        await node.wait_for_seq(journal.head())
    async with anyio.create_task_group() as clients_tg:
        for node in nodes:
            own = node.own_orders()
            if own:
                cancel = {"clientId": node.client_id, "op": "cancel"}
                cancel["orderId"] = own[0].order_id
                clients_tg.start_soon(_submit_all, node, [cancel], say, result_counts)

    head = journal.head()
    for node in nodes:
        await node.wait_for_seq(head)
    replay = await anyio.to_thread.run_sync(lambda: replay_journal(journal.path, spec))
    result = DemoResult(replay, submitted=result_counts[0], refused=result_counts[1])
    for node in nodes:
        result.replicas[node.client_id] = (node.replica.seq, node.book_hash)
    return result


async def _run_node(node: ClientNode, transport: Any) -> None:
    async with transport:
        await node.run()


IN_FLIGHT = 16
"""Orders one demo client has submitted and not yet seen acknowledged, at most."""


async def _submit_all(
    node: ClientNode,
    payloads: list[dict[str, Any]],
    say: Callable[[dict[str, Any]], None],
    counts: list[int],
) -> None:
    """Submit `payloads` with up to `IN_FLIGHT` awaiting their reply, as a busy trader
    would: one at a time, every order would wait for the journal's commit of the one
    before (the sequencer commits whatever has arrived in one fsync)."""
    slots = anyio.Semaphore(IN_FLIGHT)

    async def submit(payload: dict[str, Any]) -> None:
        try:
            await _submit(node, payload, say, counts)
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for payload in payloads:
            await slots.acquire()
            tg.start_soon(submit, payload)


async def _submit(
    node: ClientNode,
    payload: dict[str, Any],
    say: Callable[[dict[str, Any]], None],
    counts: list[int],
) -> None:
    try:
        submitted = await node.submit(payload)
    except OrderRefused as exc:
        counts[1] += 1
        say({"event": "refused", "clientId": node.client_id, "error": str(exc)})
        return
    counts[0] += 1
    say(
        {
            "event": "submitted",
            "seq": submitted.seq,
            "clientId": node.client_id,
            "orderId": submitted.order_id,
            "op": payload.get("op", "new"),
            "side": payload.get("side"),
            "price": payload.get("price"),
            "amount": payload.get("amount"),
            "tif": payload.get("tif", "GTC"),
        }
    )


def _book_records(book: OrderBook, spec: MarketSpec) -> list[dict[str, Any]]:
    records = []
    for side in (Side.SELL, Side.BUY):
        levels = book.levels(side)
        if side == Side.SELL:
            levels = list(reversed(levels))  # asks printed highest first, above the bids
        for price, amount in levels:
            records.append(
                {
                    "event": "level",
                    "side": str(side),
                    "price": str(spec.ticks_to_price(price)),
                    "amount": str(spec.lots_to_amount(amount)),
                }
            )
    return records


def _text(record: dict[str, Any]) -> str:
    kind = record["event"]
    if kind == "started":
        clients = len(record["clients"])
        if "market" in record:
            return f"market {record['market']}: both workers and {clients} clients"
        return f"dex demo: both workers and {clients} clients, memory transport\norders:"
    if kind == "submitted":
        r = record
        if r["op"] == "cancel":
            return f"  seq {r['seq']:>3}  {r['clientId']} cancels {r['orderId']}"
        return (
            f"  seq {r['seq']:>3}  {r['clientId']} {r['side']:<4} {r['amount']:>5} @ "
            f"{r['price']:>6} {r['tif']}"
        )
    if kind == "refused":
        return f"  refused {record['clientId']}: {record['error']}"
    if kind == "trade":
        r = record
        return (
            f"  trade {r['tradeId']:>6}: {r['buyer']} buys {r['amount']:>6} @ {r['price']:>7}"
            f" from {r['seller']}"
        )
    if kind == "level":
        return f"  {record['side']:<4} {record['price']:>8} {record['amount']:>8}"
    if kind == "replica":
        mark = "ok" if record["ok"] else "MISMATCH"
        return f"  {record['clientId']:<9} seq {record['seq']:>3} book {record['book']}  {mark}"
    if kind == "replay":
        return f"replay of the journal: seq {record['seq']} book {record['book']}"
    if kind == "total":
        if record["ok"]:
            return (
                f"OK: {record['markets']} markets, {record['submitted']} orders submitted;"
                f" all {record['replicas']} replicas hold their market's replay's book hash"
            )
        failed = ", ".join(record["failed"])
        return f"FAILED: {failed}: some replicas disagree with their market's replay"
    if kind == "result":
        if record["ok"]:
            return f"OK: all {record['replicas']} replicas hold the replay's book hash"
        return "FAILED: some replicas disagree with the replay"
    return f"  {kind}"


def run_demo(
    *,
    clients: int = 4,
    orders: int = 24,
    seed: int = 7,
    as_json: bool = False,
    out: TextIO | None = None,
    timeout: float = 20.0,
    markets: int = 1,
) -> int:
    """Run the demo and print it; return 0 if every replica agrees with the replay.

    `timeout` bounds the whole run (``dex demo --timeout``); past it, exit status 1.
    `markets` > 1 runs that many markets at once (`demo_market_names`), `orders` each,
    prints each market's result (its records carry ``market``) and a ``total`` record.
    """
    stream = out if out is not None else sys.stdout
    names = demo_market_names(markets)

    def say(record: dict[str, Any]) -> None:
        text = json.dumps(record) if as_json else _text(record)
        if not as_json and "market" in record and record["event"] != "started":
            text = "\n".join(f"{record['market']} {line}" for line in text.splitlines())
        stream.write(text + "\n")
        stream.flush()  # a reader (`| head -3`) sees lines as they come

    def heading(text: str) -> None:
        if not as_json:
            stream.write(text + "\n")

    if markets > 1:
        heading(
            f"dex demo: {markets} markets ({', '.join(names)}), each with both workers and"
            f" {clients} clients, memory transport"
        )
    with tempfile.TemporaryDirectory(prefix="dex-demo-") as tmp:
        try:
            if markets == 1:
                results = {
                    names[0]: anyio.run(
                        lambda: run_demo_async(
                            Path(tmp),
                            clients=clients,
                            orders=orders,
                            seed=seed,
                            say=say,
                            spec=DEFAULT_SPEC,
                            timeout=timeout,
                        )
                    )
                }
            else:
                results = anyio.run(
                    lambda: run_markets_async(
                        Path(tmp),
                        names,
                        clients=clients,
                        orders=orders,
                        seed=seed,
                        say=say,
                        timeout=timeout,
                    )
                )
        except TimeoutError:
            print(
                f"dex demo: the replicas did not converge within {timeout:g} s"
                " (a bigger --timeout for more --orders)",
                file=sys.stderr,
            )
            return 1
    if markets == 1:
        _report(results[names[0]], DEFAULT_SPEC, say, heading, {})
        return 0 if results[names[0]].converged else 1
    for market, result in results.items():
        spec = replace(DEFAULT_SPEC, market=market)
        _report(result, spec, say, partial(_prefixed, heading, market), {"market": market})
    failed = [market for market, result in results.items() if not result.converged]
    say(
        {
            "event": "total",
            "ok": not failed,
            "markets": markets,
            "submitted": sum(r.submitted for r in results.values()),
            "refused": sum(r.refused for r in results.values()),
            "replicas": sum(len(r.replicas) for r in results.values()),
            "failed": failed,
        }
    )
    stream.flush()
    return 0 if not failed else 1


def _prefixed(heading: Callable[[str], None], market: str, text: str) -> None:
    heading(f"{market} {text}")


def _report(
    result: DemoResult,
    spec: MarketSpec,
    say: Callable[[dict[str, Any]], None],
    heading: Callable[[str], None],
    tag: dict[str, str],
) -> None:
    """One market's trades, book, replay, replicas and result."""
    heading("trades:")
    for trade in result.replay.trades:
        say({"event": "trade", **trade_record(trade, spec), **tag})
    heading(f"book at seq {result.replay.seq} (asks above bids):")
    for record in _book_records(result.replay.book, spec):
        say({**record, **tag})
    say({"event": "replay", "seq": result.replay.seq, "book": result.replay.book_hash, **tag})
    heading("replicas:")
    want = (result.replay.seq, result.replay.book_hash)
    for client_id, (seq, book) in result.replicas.items():
        say(
            {
                "event": "replica",
                "clientId": client_id,
                "seq": seq,
                "book": book,
                "ok": (seq, book) == want,
                **tag,
            }
        )
    say({"event": "result", "ok": result.converged, "replicas": len(result.replicas), **tag})
