"""The typed messages of the exchange's services, each with `to_wire` and `from_wire`.

Every service and caller goes through these: a request is checked here once, at the
boundary, and turned into a value; a reply is built here, so its shape is written once.
`from_wire` raises `BadMessage` naming the field and the rule (a service answers it
with ``ERR_BAD_REQUEST``). The shapes are specified in docs/protocol.md.

The ``submit_order`` payload is a command in the core's wire form: the core's
validator (`orderbook_core.parse_command`) is its parser.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Final, NamedTuple, Self

from exchange.protocol._entry import Entry, entry_from_wire, entry_to_wire
from exchange.protocol._errors import (
    ERR_SEQ_GAP,
    BadMessage,
    BadRootHash,
    Refused,
)
from exchange.protocol._fields import wire_count, wire_object
from orderbook_core import (
    ID_RULE,
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    ValidationError,
    is_identifier,
)
from transports import JSON, is_dht_key

__all__ = [
    "MAX_BATCH",
    "MAX_WAIT_MS",
    "REQUEST_ID_FIELD",
    "RESERVED_ORDER_ID_PREFIX",
    "Head",
    "HeadRequest",
    "ProcessBatch",
    "ProcessReply",
    "SubmitReply",
    "expected_seq",
    "request_id_problem",
    "reserved_order_id",
    "root_hash_from_wire",
    "seq_gap",
    "take_request_id",
]

MAX_BATCH: Final = 1000
"""The most journal entries one ``process_order`` request may carry."""

MAX_WAIT_MS: Final = 20_000
"""The longest an ``orderbook_head`` long poll may wait: below the Grenache server's
30 s handler bound, so the wait ends with an answer, not a cut-off."""

RESERVED_ORDER_ID_PREFIX: Final = "_"
"""A new order's id may not start with this: the sequencer once generated ``_<seq>``
for orders sent without an id, and journals still hold such orders."""

REQUEST_ID_FIELD: Final = "requestId"
"""The field of a signed ``modify`` that names this very request, unique per client:
the sequencer answers a repeat of it with the first reply and stores nothing, so a
captured modify cannot be re-sent later (docs/protocol.md "Replays")."""

_GAP_RE: Final = re.compile(rf"^{ERR_SEQ_GAP}: expected ([0-9]{{1,16}})")


def _hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _root(value: object, field: str) -> str | None:
    if value is not None and not is_dht_key(value):
        raise BadMessage(f"{field}: must be null or a 40-hex root hash")
    return value  # type: ignore[return-value]  # checked just above


def reserved_order_id(command: Command) -> str | None:
    """Why ``submit_order`` refuses `command` (``ERR_VALIDATION``) beyond the core's
    rules: a new order with an id in the reserved namespace; None when it does not."""
    if isinstance(command, NewOrder) and command.order_id.startswith(RESERVED_ORDER_ID_PREFIX):
        return (
            f"orderId: must not start with {RESERVED_ORDER_ID_PREFIX!r}"
            " (reserved for generated ids)"
        )
    return None


def take_request_id(payload: JSON) -> tuple[JSON, str | None]:
    """Split a ``submit_order`` payload into the command the core validates and its
    ``requestId`` (None when it has none); the core's validator knows no such field.

    Raises:
        orderbook_core.ValidationError: ``requestId`` is there but not an id.
    """
    if not isinstance(payload, dict) or REQUEST_ID_FIELD not in payload:
        return payload, None
    command = dict(payload)
    request_id = command.pop(REQUEST_ID_FIELD)
    if not is_identifier(request_id):
        raise ValidationError(REQUEST_ID_FIELD, f"must be {ID_RULE}")
    return command, request_id


def request_id_problem(command: Command, request_id: str | None) -> str | None:
    """Why ``submit_order`` refuses `command` with `request_id` (``ERR_VALIDATION``):
    a ``requestId`` on a new order or a cancel (their ``orderId`` is their request id);
    None when it does not. A modify without one is refused as unsigned (``ERR_AUTH``)."""
    if request_id is not None and not isinstance(command, ModifyOrder):
        return f"{REQUEST_ID_FIELD}: unknown field (only a modify carries one)"
    return None


class SubmitReply(NamedTuple):
    """``submit_order``'s reply: the command is durable as sequence number `seq`."""

    seq: int
    order_id: str

    def to_wire(self) -> JSON:
        return {"seq": self.seq, "orderId": self.order_id}

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": int >= 1, "orderId": str}``."""
        obj = wire_object(reply, "submit_order reply", frozenset({"seq", "orderId"}))
        order_id = obj.get("orderId")
        if not isinstance(order_id, str):
            raise BadMessage("orderId: must be a string")
        return cls(wire_count(obj.get("seq"), "seq", 1), order_id)


class ProcessBatch(NamedTuple):
    """``process_order``'s payload: a run of consecutive journal entries.

    On the wire a single entry is ``{"seq", "ts", "command"}`` (`entry_to_wire`) and a
    run is ``{"entries": [{"seq", "ts", "command"}, ...]}`` with consecutive seqs, at
    most `MAX_BATCH` of them; both parse to a batch, every command validated.
    """

    entries: tuple[Entry, ...]

    @property
    def first(self) -> int:
        return self.entries[0].seq

    @property
    def last(self) -> int:
        return self.entries[-1].seq

    def to_wire(self) -> JSON:
        return self.to_wire_object()

    def to_wire_object(self) -> dict[str, Any]:
        """The wire form as a dict (the object the sequencer signs)."""
        if len(self.entries) == 1:
            return entry_to_wire(self.entries[0])
        return {"entries": [entry_to_wire(entry) for entry in self.entries]}

    @classmethod
    def from_wire(cls, payload: JSON, spec: MarketSpec) -> Self:
        """Raises: BadMessage: neither form, empty, too long, or seqs not consecutive;
        orderbook_core.ValidationError: a command breaks a rule (`entry_from_wire`)."""
        if not (isinstance(payload, dict) and "entries" in payload):
            return cls((entry_from_wire(payload, spec),))
        obj = wire_object(payload, "payload", frozenset({"entries"}))
        items = obj["entries"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise BadMessage(f"entries: must be a list of 1 to {MAX_BATCH} entries")
        entries = tuple(entry_from_wire(item, spec) for item in items)
        for before, after in itertools.pairwise(entries):
            if after.seq != before.seq + 1:
                raise BadMessage(f"entries: seq {after.seq} does not follow {before.seq}")
        return cls(entries)


class ProcessReply(NamedTuple):
    """``process_order``'s reply: the version `root` includes command `seq`."""

    seq: int
    root: str

    def to_wire(self) -> JSON:
        return {"seq": self.seq, "root": self.root}

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": int >= 1, "root": hash}``."""
        obj = wire_object(reply, "process_order reply", frozenset({"seq", "root"}))
        root = _root(obj.get("root"), "root")
        if root is None:
            raise BadMessage("root: must be a 40-hex root hash")
        return cls(wire_count(obj.get("seq"), "seq", 1), root)


class Head(NamedTuple):
    """``orderbook_head``'s reply: the latest version, `seq` and root (None: none yet).

    The matcher signs it: `key` is its public key (64 hex) and `sig` its signature
    (`exchange.protocol.sign_head`); both None in a head not signed (yet). `instance`
    names the exchange it serves: the sequencer's public key (64 hex; None while the
    matcher does not know it), which clients pin the matcher key to. Parsing checks
    their shape only: `exchange.protocol.verify_head` checks the signature.
    """

    seq: int
    root: str | None
    key: str | None = None
    sig: str | None = None
    instance: str | None = None

    def to_wire(self) -> JSON:
        return self.to_wire_object()

    def to_wire_object(self) -> dict[str, Any]:
        """The wire form as a dict; ``key`` and ``sig`` only when set."""
        wire: dict[str, Any] = {"seq": self.seq, "root": self.root}
        if self.key is not None:
            wire["key"] = self.key
            wire["instance"] = self.instance  # signed with the key, null or not
        if self.sig is not None:
            wire["sig"] = self.sig
        return wire

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": int >= 0, "root": hash | null, "key"?: 64
        hex, "instance"?: 64 hex | null, "sig"?: 128 hex}``."""
        fields = frozenset({"seq", "root", "key", "sig", "instance"})
        obj = wire_object(reply, "orderbook_head reply", fields)
        seq = wire_count(obj.get("seq"), "seq")
        root = _root(obj.get("root"), "root")
        if (root is None) != (seq == 0):
            raise BadMessage("root: must be null exactly when seq is 0")
        key, sig = obj.get("key"), obj.get("sig")
        if key is not None and not (isinstance(key, str) and _hex(key, 64)):
            raise BadMessage("key: must be 64 lowercase hex")
        if sig is not None and not (isinstance(sig, str) and _hex(sig, 128)):
            raise BadMessage("sig: must be 128 lowercase hex")
        instance = obj.get("instance")
        if instance is not None and not (isinstance(instance, str) and _hex(instance, 64)):
            raise BadMessage("instance: must be 64 lowercase hex or null")
        return cls(seq, root, key, sig, instance)


class HeadRequest(NamedTuple):
    """``orderbook_head``'s payload: ``null`` (answer now) or a long poll.

    ``{"after": N, "waitMs": M}`` asks for an answer as soon as a version beyond N
    exists, or after M ms (at most `MAX_WAIT_MS`) with the head as it is then.
    """

    after: int | None = None
    wait_ms: int = 0

    def to_wire(self) -> JSON:
        if self.after is None:
            return None
        return {"after": self.after, "waitMs": self.wait_ms}

    @classmethod
    def from_wire(cls, payload: JSON) -> Self:
        """Raises: BadMessage: not null nor ``{"after": 0.., "waitMs": 0..MAX_WAIT_MS}``."""
        if payload is None:
            return cls()
        obj = wire_object(payload, "orderbook_head payload", frozenset({"after", "waitMs"}))
        wait_ms = obj.get("waitMs", 0)
        if type(wait_ms) is not int or not 0 <= wait_ms <= MAX_WAIT_MS:
            raise BadMessage(f"waitMs: must be an integer from 0 to {MAX_WAIT_MS}")
        return cls(wire_count(obj.get("after"), "after"), wait_ms)


def root_hash_from_wire(payload: object) -> str:
    """Return the ``orderbook_updated`` payload, a version's root hash (40 lowercase hex).

    Raises:
        BadRootHash: anything else (nothing is recorded).
    """
    if not isinstance(payload, str):
        raise BadRootHash(f"expected a 40-hex root hash string, got {type(payload).__name__}")
    if not is_dht_key(payload):
        shown = payload if len(payload) <= 50 else payload[:47] + "..."
        raise BadRootHash(f"expected a 40-hex root hash, got {shown!r}")
    return payload


def seq_gap(expected: int) -> Refused:
    """The refusal of a ``process_order`` whose seq is not `expected`, the next one."""
    return Refused(ERR_SEQ_GAP, f"expected {expected}")


def expected_seq(message: str) -> int | None:
    """The next seq an ``ERR_SEQ_GAP`` reply asks for, or None for any other reply."""
    match = _GAP_RE.match(message)
    return int(match.group(1)) if match else None
