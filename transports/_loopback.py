"""The loopback adapter: one process, real Grenache bytes, deterministic faults.

Theory of operation
-------------------
`LoopbackNetwork` is a `MemoryNetwork` whose messages are the bodies a Grenache peer
would put on the wire: the caller encodes ``[rid, key, payload]`` with the sans-I/O
codec (`transports._codec`), the server decodes it, and the reply ``[rid, err, data]``
travels back the same way, its rid checked. DHT calls are encoded as the bodies of
Grape's ``/put`` and ``/get`` HTTP API and answered as Grape answers them (an empty
body for "not found"). So anything that survives loopback survives the real encoding.

Faults come from a `FaultPlan` and one seeded random stream. Every exchange draws the
same fixed number of numbers when its request is sent (whatever the outcome), so the
same seed and the same sequence of calls give the same faults; `network.log` records
them. What each fault looks like to the caller:

- ``drop_request``: the handler never runs; the caller sees `RequestTimeout`.
- ``drop_reply``: the handler runs, its reply is lost; the caller sees `RequestTimeout`
  (the case at-least-once delivery exists for).
- ``duplicate``: the request is delivered twice; the handler runs twice; the caller
  gets the first reply.
- ``delay=(lo, hi)``: each request, reply and DHT call waits uniform(lo, hi) seconds.
- ``reorder``: a request is held back until the next request to the same peer has
  overtaken it (or ``reorder_hold`` seconds pass): concurrent requests arrive out of order.
- ``put_fail`` / ``get_fail``: the DHT call fails with Grape's error string
  (`RemoteError`); nothing is stored. ``get_miss``: `get` finds nothing, as after an
  eviction.
- `LoopbackNetwork.set_down`: the peer refuses connections (`ConnectionFailed`).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import uuid
from dataclasses import dataclass, replace

import anyio

from transports._base import JSON
from transports._codec import MAX_BODY_BYTES, ClientCodec, ServerCodec
from transports._dht import MAX_VALUE_BYTES, dht_key, is_dht_key
from transports._exceptions import ConnectionFailed, ProtocolError, RemoteError
from transports._memory import MemoryNetwork, MemoryTransport, _Call, _Pending

__all__ = ["FaultPlan", "LoopbackNetwork", "LoopbackTransport"]


def _probability(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What the loopback network does to messages; probabilities are per message.

    Attributes:
        drop_request: a request is lost (the handler never runs).
        drop_reply: a reply is lost (the handler ran).
        duplicate: a request is delivered twice.
        delay: (low, high) seconds; each message waits uniform(low, high).
        reorder: a request is held until the next one to the same peer overtakes it.
        reorder_hold: the longest a held request waits for another to overtake it.
        put_fail: a DHT put fails (nothing stored).
        get_fail: a DHT get fails.
        get_miss: a DHT get finds nothing, as if the value had been evicted.
    """

    drop_request: float = 0.0
    drop_reply: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    reorder: float = 0.0
    reorder_hold: float = 0.05
    put_fail: float = 0.0
    get_fail: float = 0.0
    get_miss: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "drop_request",
            "drop_reply",
            "duplicate",
            "reorder",
            "put_fail",
            "get_fail",
            "get_miss",
        ):
            _probability(name, getattr(self, name))
        low, high = self.delay
        if not (0.0 <= low <= high < math.inf):
            raise ValueError(f"delay must be (low, high) with 0 <= low <= high, not {self.delay}")
        if not (0.0 <= self.reorder_hold < math.inf):
            raise ValueError(f"reorder_hold must be >= 0 seconds, not {self.reorder_hold}")


@dataclass(frozen=True, slots=True)
class _Fate:
    """Everything the network decided about one exchange, drawn when it was sent."""

    number: int
    drop_request: bool
    drop_reply: bool
    duplicate: bool
    hold: bool
    request_delay: float
    reply_delay: float

    def describe(self) -> str:
        flags = [
            flag
            for flag, on in (
                ("drop_request", self.drop_request),
                ("drop_reply", self.drop_reply),
                ("duplicate", self.duplicate),
                ("reorder", self.hold),
            )
            if on
        ]
        return " ".join(flags) or "ok"


@dataclass(frozen=True, slots=True)
class _Wire:
    """A request on the fake wire: its rid (to check the reply) and its bytes."""

    rid: str
    name: str
    body: bytes


class _Held:
    """A request held back by `reorder`, waiting for another to overtake it."""

    __slots__ = ("call", "released")

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.released = anyio.Event()


class LoopbackNetwork(MemoryNetwork):
    """A `MemoryNetwork` that encodes every message and injects seeded faults.

    Args:
        seed: seeds peer choice, faults and request ids; same seed and same calls give
            the same outcomes.
        faults: the whole `FaultPlan`; or give its fields one by one instead:
        drop: shorthand for both `drop_request` and `drop_reply`.
        drop_request, drop_reply, duplicate, delay, reorder, put_fail, get_fail,
            get_miss: see `FaultPlan`.
        compress: send bodies gzipped, as with ``grc-compress: gzip``.
        max_size: bound on every body, as in `transports._codec`.
        keep_dead_peers, max_values: see `MemoryNetwork`.

    Attributes:
        faults: the current `FaultPlan`; assign a new one to change faults mid-test.
        log: one line per exchange and per faulted DHT call, e.g.
            ``"#3 request submit_order -> loopback:1: drop_reply"``.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        faults: FaultPlan | None = None,
        drop: float = 0.0,
        drop_request: float | None = None,
        drop_reply: float | None = None,
        duplicate: float = 0.0,
        delay: tuple[float, float] = (0.0, 0.0),
        reorder: float = 0.0,
        put_fail: float = 0.0,
        get_fail: float = 0.0,
        get_miss: float = 0.0,
        compress: bool = False,
        max_size: int = MAX_BODY_BYTES,
        keep_dead_peers: bool = False,
        max_values: int | None = None,
    ) -> None:
        super().__init__(seed=seed, keep_dead_peers=keep_dead_peers, max_values=max_values)
        plan = FaultPlan(
            drop_request=drop if drop_request is None else drop_request,
            drop_reply=drop if drop_reply is None else drop_reply,
            duplicate=duplicate,
            delay=delay,
            reorder=reorder,
            put_fail=put_fail,
            get_fail=get_fail,
            get_miss=get_miss,
        )
        if faults is not None:
            if plan != FaultPlan():
                raise ValueError("give either faults=FaultPlan(...) or fault keywords, not both")
            plan = faults
        self.faults = plan
        self.log: list[str] = []
        # Separate streams, so that e.g. adding a peer does not shift every later fault.
        self._fault_random = random.Random(f"faults:{seed}")
        self._rid_random = random.Random(f"rids:{seed}")
        self._client = ClientCodec(compress=compress, max_size=max_size)
        self._server_codec = ServerCodec(max_size=max_size)
        self._held: dict[str, _Held] = {}
        self._exchanges = 0

    def _address(self, port: int) -> str:
        return f"loopback:{port}"

    def with_faults(self, **changes: object) -> FaultPlan:
        """Replace some fields of `faults` (e.g. ``drop_reply=0``); return the new plan."""
        self.faults = replace(self.faults, **changes)  # type: ignore[arg-type]
        return self.faults

    # -- deciding ----------------------------------------------------------------------

    def _delay(self, draw: float) -> float:
        low, high = self.faults.delay
        return low + (high - low) * draw

    def _decide(self) -> _Fate:
        plan = self.faults
        draws = [self._fault_random.random() for _ in range(6)]  # always six: determinism
        self._exchanges += 1
        return _Fate(
            number=self._exchanges,
            drop_request=draws[0] < plan.drop_request,
            drop_reply=draws[1] < plan.drop_reply,
            duplicate=draws[2] < plan.duplicate,
            hold=draws[3] < plan.reorder,
            request_delay=self._delay(draws[4]),
            reply_delay=self._delay(draws[5]),
        )

    # -- messages ----------------------------------------------------------------------

    def _new_rid(self) -> str:
        return str(uuid.UUID(int=self._rid_random.getrandbits(128), version=4))

    def _encode_request(self, name: str, payload: JSON) -> object:
        rid = self._new_rid()
        return _Wire(rid, name, self._client.request(rid, name, payload))

    def _decode_request(self, message: object) -> tuple[str, JSON]:
        assert isinstance(message, _Wire)
        request = self._server_codec.request(message.body, compressed=self._client.compress)
        return request.key, request.payload

    def _encode_reply(self, request: object, error: str | None, data: JSON) -> object:
        assert isinstance(request, _Wire)
        return self._server_codec.reply(request.rid, error, data, compressed=self._client.compress)

    def _decode_reply(self, request: object, reply: object) -> JSON:
        assert isinstance(request, _Wire)
        assert isinstance(reply, bytes)
        decoded = self._client.reply(reply, rid=request.rid)
        if decoded.error is not None:
            raise RemoteError(decoded.error)
        return decoded.data

    async def _transmit(self, address: str, name: str, message: object, pending: _Pending) -> None:
        self._server(address)  # a refused connection fails at once, before any delay
        fate = self._decide()
        self.log.append(f"#{fate.number} request {name} -> {address}: {fate.describe()}")
        if fate.request_delay:
            await anyio.sleep(fate.request_delay)
        if fate.drop_request:
            return
        call = _Call(message, pending, fate)
        if fate.hold:
            await self._hold(address, call)
        else:
            self._deliver(address, call)
        if fate.duplicate:
            # The copy is best effort: if the peer went away meanwhile, only it is lost.
            with contextlib.suppress(ConnectionFailed):
                self._deliver(address, _Call(message, pending, fate))

    def _deliver(self, address: str, call: _Call) -> None:
        self._server(address).send.send_nowait(call)
        held = self._held.pop(address, None)
        if held is not None:
            # The held request is overtaken: it arrives right after this one.
            self._deliver_held(address, held)

    def _deliver_held(self, address: str, held: _Held) -> None:
        held.released.set()
        server = self._servers.get(address)
        if server is None or address in self._down:
            held.call.pending.fail(ConnectionFailed(f"connection reset: {address}"))
        else:
            server.send.send_nowait(held.call)

    async def _hold(self, address: str, call: _Call) -> None:
        previous = self._held.pop(address, None)
        if previous is not None:
            # Only one request is held per peer; the one before goes through now.
            self._deliver_held(address, previous)
        held = _Held(call)
        self._held[address] = held
        try:
            with anyio.move_on_after(self.faults.reorder_hold):
                await held.released.wait()
        finally:
            if not held.released.is_set():
                # Nobody overtook it in time (or its caller gave up while it was held):
                # it was sent, so it arrives, late and alone.
                if self._held.get(address) is held:
                    del self._held[address]
                self._deliver_held(address, held)

    async def _transmit_reply(self, call: _Call, reply: object) -> None:
        fate = call.fate
        assert isinstance(fate, _Fate)
        if fate.reply_delay:
            await anyio.sleep(fate.reply_delay)
        if not fate.drop_reply:
            call.pending.resolve(reply)

    # -- DHT, as Grape's HTTP API -------------------------------------------------------

    def _grape_body(self, data: JSON) -> bytes:
        return json.dumps({"rid": self._new_rid(), "data": data}).encode()

    async def _put(self, value: str) -> str:
        fail, delay = self._fault_random.random(), self._fault_random.random()
        self._exchanges += 1
        number = self._exchanges
        if self._delay(delay):
            await anyio.sleep(self._delay(delay))
        if fail < self.faults.put_fail:
            self.log.append(f"#{number} put: put_fail")
            raise RemoteError("All queries failed")
        reply = self._grape_put(self._grape_body({"v": value}))
        key = json.loads(reply)
        if isinstance(key, str) and not is_dht_key(key):
            raise RemoteError(key)  # Grape's errors are strings, sent with HTTP 200
        if key != dht_key(value):
            raise ProtocolError(f"grape answered put with {reply[:80]!r}")
        return str(key)

    def _grape_put(self, body: bytes) -> bytes:
        """Grape's side of ``/put``: store ``data.v`` and answer its key (or an error)."""
        value = json.loads(body)["data"]["v"]
        if not isinstance(value, str) or len(value) > MAX_VALUE_BYTES:
            return json.dumps("v must be less than 1000 bytes in put()").encode()
        key = dht_key(value)
        self._store(key, value)
        return json.dumps(key).encode()

    async def _get(self, key: str) -> str | None:
        fail, miss = self._fault_random.random(), self._fault_random.random()
        delay = self._fault_random.random()
        self._exchanges += 1
        number = self._exchanges
        if self._delay(delay):
            await anyio.sleep(self._delay(delay))
        if fail < self.faults.get_fail:
            self.log.append(f"#{number} get: get_fail")
            raise RemoteError("No nodes to query")
        if miss < self.faults.get_miss:
            self.log.append(f"#{number} get: get_miss")
            return None
        reply = self._grape_get(self._grape_body(key))
        if not reply:
            return None  # Grape's "not found": HTTP 200, empty body
        item = json.loads(reply)
        value = item.get("v") if isinstance(item, dict) else None
        if not isinstance(value, str) or dht_key(value) != key:
            raise ProtocolError(f"grape answered get with {reply[:80]!r}")
        return value

    def _grape_get(self, body: bytes) -> bytes:
        """Grape's side of ``/get``: the item as ``{"id", "token", "v"}``, or no body."""
        key = json.loads(body)["data"]
        value = self._load(key)
        if value is None:
            return b""
        return json.dumps({"id": "0" * 40, "token": None, "v": value}).encode()


class LoopbackTransport(MemoryTransport):
    """A transport attached to a `LoopbackNetwork`; many may share one network.

    Behaves as `MemoryTransport`, plus: `request` may also raise `PayloadTooLarge` (a
    body over the network's `max_size`), and faults surface as `RequestTimeout`,
    `ConnectionFailed` and `RemoteError` exactly as on a real network.

    Args:
        network: the world this node lives in.
    """

    def __init__(self, network: LoopbackNetwork) -> None:
        if not isinstance(network, LoopbackNetwork):
            raise TypeError(f"LoopbackTransport needs a LoopbackNetwork, not {network!r}")
        super().__init__(network)
