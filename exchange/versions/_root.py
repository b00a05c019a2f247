"""The root document of a version: one small JSON object that names everything else.

The wire contract (docs/protocol.md) fixes its fields; we add the market's tick and lot
size (decimal strings) so a reader in another language can turn the integer ticks and
lots of the pages into prices and amounts without knowing the market in advance. The
encoding is canonical (sorted keys, no spaces, ASCII), so one root has one key.

Versions are the matcher's: its publisher signs each root (`sign_root`): ``key`` is
the matcher's public key (64 hex) and ``sig`` its Ed25519 signature over
``"dex-root/1\n" + canonical JSON of the root without sig``. Both are null in a root
written without a key (tests, tools); a reader that was given the matcher's key
refuses such a root, and any root signed by another key (`verify_root`). Ed25519
signatures are deterministic, so a version republished after a restart has the same
root key.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.protocol import (
    ROOT_DOMAIN,
    AuthFailed,
    InvalidVersion,
    public_key_from_hex,
    public_key_hex,
    sign_object,
    verify_object,
)
from orderbook_core import MarketSpec, canonical_json
from transports import MAX_VALUE_BYTES, is_dht_key

__all__ = [
    "ROOT_FORMAT",
    "RootDoc",
    "decode_root",
    "encode_root",
    "sign_root",
    "spec_fields",
    "verify_root",
]

ROOT_FORMAT = "dex-book/3"
"""The ``format`` of every root document this module writes and reads."""

_KEYS = frozenset(
    {
        "book",
        "commands",
        "events",
        "first",
        "format",
        "key",
        "lot",
        "market",
        "prev",
        "seq",
        "sig",
        "tick",
    }
)
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_SIG_RE = re.compile(r"[0-9a-f]{128}")
_DECIMAL_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_MAX_MARKET = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class RootDoc:
    """The root document of one version of the book.

    Attributes:
        market: the market's name, e.g. "BTC-USD".
        seq: the sequence number of the last command the version includes.
        first: the first command whose events the version carries (``first..seq``);
            ``first == seq + 1`` when it carries none (the initial, empty version).
        prev: the root key of the previous version, None for the first one.
        book: the root key of the book's page tree, None for an empty book.
        events: the root key of the version's event pages, None when it has none.
        commands: the root key of the version's command pages (the sequenced commands
            ``first..seq``, one per number: what a replica applies to follow), None
            when it carries none (no commands, or a writer that does not give them: a
            replica then reads the book's pages).
        tick: the tick size as a decimal string ("0.01"); a price of n ticks is n * tick.
        lot: the lot size as a decimal string ("0.001"); an amount of n lots is n * lot.
        key: the matcher's public key (64 hex) that signed the root, None if unsigned.
        sig: its signature (128 hex), None if unsigned (`sign_root`, `verify_root`).
        format: always `ROOT_FORMAT`.
    """

    market: str
    seq: int
    first: int
    prev: str | None
    book: str | None
    events: str | None
    commands: str | None
    tick: str
    lot: str
    key: str | None = None
    sig: str | None = None
    format: str = ROOT_FORMAT


def spec_fields(spec: MarketSpec) -> dict[str, str]:
    """The ``market``, ``tick`` and ``lot`` fields of a root for `spec`."""
    # Fixed-point notation: str(Decimal("1E-8")) would be "1E-8".
    return {
        "market": spec.market,
        "tick": format(spec.tick_size, "f"),
        "lot": format(spec.lot_size, "f"),
    }


def _check(root: RootDoc) -> None:
    """Raise ValueError naming the first field of `root` that breaks a rule."""
    if root.format != ROOT_FORMAT:
        raise ValueError(f"format: must be {ROOT_FORMAT!r}")
    if not (isinstance(root.market, str) and 0 < len(root.market) <= _MAX_MARKET):
        raise ValueError(f"market: must be a string of 1..{_MAX_MARKET} characters")
    for name in ("seq", "first"):
        value = getattr(root, name)
        if type(value) is not int or value < 0:
            raise ValueError(f"{name}: must be a non-negative integer")
    if not root.first <= root.seq + 1:
        raise ValueError("first: must be at most seq + 1")
    for name in ("prev", "book", "events", "commands"):
        value = getattr(root, name)
        if value is not None and not is_dht_key(value):
            raise ValueError(f"{name}: must be null or 40 lowercase hex characters")
    for name in ("tick", "lot"):
        value = getattr(root, name)
        if not (isinstance(value, str) and _DECIMAL_RE.fullmatch(value)):
            raise ValueError(f"{name}: must be a plain decimal string such as '0.01'")
        try:
            positive = Decimal(value) > 0
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            positive = False
        if not positive:
            raise ValueError(f"{name}: must be > 0")
    if root.key is not None and not (isinstance(root.key, str) and _KEY_RE.fullmatch(root.key)):
        raise ValueError("key: must be null or 64 lowercase hex characters")
    if root.sig is not None and not (isinstance(root.sig, str) and _SIG_RE.fullmatch(root.sig)):
        raise ValueError("sig: must be null or 128 lowercase hex characters")
    if (root.key is None) != (root.sig is None):
        raise ValueError("key, sig: both null or both set")


def encode_root(root: RootDoc) -> str:
    """The canonical text of `root`: sorted keys, no spaces, ASCII; < 1000 bytes.

    Raises:
        ValueError: a field breaks a rule (the message names it), or the text would not
            fit in one DHT value.
    """
    _check(root)
    text = canonical_json(_fields(root))
    if len(text) > MAX_VALUE_BYTES:
        raise ValueError(f"root document of {len(text)} bytes does not fit in a DHT value")
    return text


def _fields(root: RootDoc) -> dict[str, Any]:
    return {
        "book": root.book,
        "commands": root.commands,
        "events": root.events,
        "first": root.first,
        "format": root.format,
        "key": root.key,
        "lot": root.lot,
        "market": root.market,
        "prev": root.prev,
        "seq": root.seq,
        "sig": root.sig,
        "tick": root.tick,
    }


def sign_root(root: RootDoc, key: Ed25519PrivateKey) -> RootDoc:
    """`root` with `key`'s public key and its signature over every other field."""
    fields = {**_fields(root), "key": public_key_hex(key)}
    signed = sign_object(ROOT_DOMAIN, fields, key)
    return dataclasses.replace(root, key=signed["key"], sig=signed["sig"])


def verify_root(root: RootDoc, trusted: Ed25519PublicKey) -> None:
    """Check that `trusted` (the matcher's key) signed `root`.

    Raises:
        InvalidVersion: unsigned, signed by another key, or a signature that does not
            verify (the caller keeps what it had).
    """
    if root.key is None or root.sig is None:
        raise InvalidVersion("root document: not signed by the matcher")
    if root.key != public_key_hex(trusted):
        raise InvalidVersion("root document: signed by another key than the matcher's")
    try:
        verify_object(ROOT_DOMAIN, _fields(root), public_key_from_hex(root.key, "key"),
                      what="the matcher")  # fmt: skip
    except AuthFailed as exc:
        raise InvalidVersion(f"root document: {exc.detail}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_root(text: str) -> RootDoc:
    """Parse and validate a root document.

    Accepts exactly the canonical encoding's fields (unknown or missing fields are
    refused: a different format must say so in ``format``). It does not check that the
    text *is* canonical; the caller verifies the text against its key.

    Raises:
        InvalidVersion: not JSON, not an object, wrong format, or a field breaks a rule.
    """
    if not isinstance(text, str):
        raise InvalidVersion("root document: not a string")
    if len(text) > MAX_VALUE_BYTES:
        raise InvalidVersion(f"root document: larger than {MAX_VALUE_BYTES} bytes")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InvalidVersion(f"root document: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidVersion("root document: not a JSON object")
    if obj.get("format") != ROOT_FORMAT:
        raise InvalidVersion(f"root document: format is not {ROOT_FORMAT!r}")
    if set(obj) != _KEYS:
        missing = sorted(_KEYS - set(obj))
        extra = sorted(set(obj) - _KEYS)
        raise InvalidVersion(f"root document: missing fields {missing}, unknown fields {extra}")
    root = RootDoc(
        market=obj["market"],
        seq=obj["seq"],
        first=obj["first"],
        prev=obj["prev"],
        book=obj["book"],
        events=obj["events"],
        commands=obj["commands"],
        tick=obj["tick"],
        lot=obj["lot"],
        key=obj["key"],
        sig=obj["sig"],
        format=obj["format"],
    )
    try:
        _check(root)
    except ValueError as exc:
        raise InvalidVersion(f"root document: {exc}") from None
    return root
