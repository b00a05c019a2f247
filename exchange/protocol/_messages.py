"""The typed messages of the exchange's services, each with `to_wire` and `from_wire`.

Every service and caller goes through these: a request is checked here once, at the
boundary, and turned into a value; a reply is built here, so its shape is written once.
`from_wire` raises `BadMessage` naming the field and the rule (a service answers it
with ``ERR_BAD_REQUEST``). The shapes are specified in docs/protocol.md.

The ``submit_order`` payload is a command in the core's wire form: the core's
validator (`orderbook_core.parse_command`) is its parser.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple, Self

from exchange.protocol._errors import (
    ERR_SEQ_GAP,
    BadMessage,
    BadRootHash,
    Refused,
)
from transports import JSON, is_dht_key

__all__ = [
    "MAX_SEQ",
    "Head",
    "ProcessReply",
    "ProcessRequest",
    "SubmitReply",
    "expected_seq",
    "head_request_from_wire",
    "root_hash_from_wire",
    "seq_gap",
]

MAX_SEQ: Final = 2**53 - 1
"""The largest sequence number or timestamp taken: every JSON peer (JavaScript too)
holds it exactly."""

_GAP_RE: Final = re.compile(rf"^{ERR_SEQ_GAP}: expected ([0-9]{{1,16}})")


def _object(payload: JSON, what: str, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadMessage(f"{what}: must be an object {{{', '.join(sorted(fields))}}}")
    extra = sorted(set(payload) - fields)
    if extra:
        raise BadMessage(f"{extra[0]}: unknown field")
    return payload


def _count(value: object, field: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= MAX_SEQ:
        raise BadMessage(f"{field}: must be an integer from {low} to {MAX_SEQ}")
    return value


def _root(value: object, field: str) -> str | None:
    if value is not None and not is_dht_key(value):
        raise BadMessage(f"{field}: must be null or a 40-hex root hash")
    return value  # type: ignore[return-value]  # checked just above


class SubmitReply(NamedTuple):
    """``submit_order``'s reply: the command is durable as sequence number `seq`."""

    seq: int
    order_id: str

    def to_wire(self) -> JSON:
        return {"seq": self.seq, "orderId": self.order_id}

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": int >= 1, "orderId": str}``."""
        obj = _object(reply, "submit_order reply", frozenset({"seq", "orderId"}))
        order_id = obj.get("orderId")
        if not isinstance(order_id, str):
            raise BadMessage("orderId: must be a string")
        return cls(_count(obj.get("seq"), "seq", 1), order_id)


class ProcessRequest(NamedTuple):
    """``process_order``'s payload: journal entry `seq` with its timestamp and command.

    `command` is the command's wire form as journaled; the matcher validates it with
    the core's validator before applying it.
    """

    seq: int
    ts: int
    command: dict[str, Any]

    def to_wire(self) -> JSON:
        return {"seq": self.seq, "ts": self.ts, "command": self.command}

    @classmethod
    def from_wire(cls, payload: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": 1.., "ts": 0.., "command": {...}}``."""
        obj = _object(payload, "payload", frozenset({"seq", "ts", "command"}))
        seq = _count(obj.get("seq"), "seq", 1)
        ts = _count(obj.get("ts"), "ts")
        command = obj.get("command")
        if not isinstance(command, dict):
            raise BadMessage("command: must be an object")
        return cls(seq, ts, command)


class ProcessReply(NamedTuple):
    """``process_order``'s reply: the version `root` includes command `seq`."""

    seq: int
    root: str

    def to_wire(self) -> JSON:
        return {"seq": self.seq, "root": self.root}

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": int >= 1, "root": hash}``."""
        obj = _object(reply, "process_order reply", frozenset({"seq", "root"}))
        root = _root(obj.get("root"), "root")
        if root is None:
            raise BadMessage("root: must be a 40-hex root hash")
        return cls(_count(obj.get("seq"), "seq", 1), root)


class Head(NamedTuple):
    """``orderbook_head``'s reply: the latest version, `seq` and root (None: none yet)."""

    seq: int
    root: str | None

    def to_wire(self) -> JSON:
        return {"seq": self.seq, "root": self.root}

    @classmethod
    def from_wire(cls, reply: JSON) -> Self:
        """Raises: BadMessage: not ``{"seq": int >= 0, "root": hash | null}``."""
        obj = _object(reply, "orderbook_head reply", frozenset({"seq", "root"}))
        seq = _count(obj.get("seq"), "seq")
        root = _root(obj.get("root"), "root")
        if (root is None) != (seq == 0):
            raise BadMessage("root: must be null exactly when seq is 0")
        return cls(seq, root)


def head_request_from_wire(payload: JSON) -> None:
    """Check an ``orderbook_head`` payload (null).

    Raises:
        BadMessage: it is not null.
    """
    if payload is not None:
        raise BadMessage("orderbook_head takes null")


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
