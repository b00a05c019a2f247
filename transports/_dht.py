"""DHT rules shared by every adapter: Grape's immutable-item key and its value bound.

Grape (bittorrent-dht, BEP44) stores an immutable item under the sha1 of the *bencoded*
value, and a bencoded string is `<byte length>:<bytes>`. Computing the key locally lets
an adapter check what the DHT returns, and lets the memory and loopback adapters hand
out exactly the keys a real grape would, so services can't tell them apart.

Grape refuses values of 1000 characters or more, and values over 1000 UTF-8 bytes (with
an unhelpful "All queries failed" for some of those). We refuse both bounds *before*
sending, with `PayloadTooLarge`, and allow at most `MAX_VALUE_BYTES` = 999 bytes.
"""

from __future__ import annotations

import hashlib
import re

from transports._exceptions import PayloadTooLarge

__all__ = ["MAX_VALUE_BYTES", "check_key", "check_value", "dht_key", "is_dht_key"]

MAX_VALUE_BYTES = 999
"""The largest DHT value, in UTF-8 bytes (and characters), that every grape accepts."""

_KEY_RE = re.compile(r"[0-9a-f]{40}")


def dht_key(value: str) -> str:
    """Return the key Grape stores `value` under: sha1 of the bencoded string, 40 hex.

    Args:
        value: the item, a str (encoded as UTF-8).

    Returns:
        The lowercase hex sha1 of `b"<len(utf8)>:" + utf8`; e.g. "hello world" gives
        "6d33adc2b6b2c14c3036feefb7fedbca1a880527".

    Raises:
        TypeError: `value` is not a str (Grape would coerce it, e.g. to "[object Object]").
    """
    if not isinstance(value, str):
        raise TypeError(f"DHT values are str, not {type(value).__name__}")
    data = value.encode("utf-8")
    return hashlib.sha1(b"%d:" % len(data) + data).hexdigest()


def check_value(value: object) -> str:
    """Check that `value` is a str every grape will store, and return it.

    Args:
        value: the candidate item.

    Returns:
        `value`, unchanged.

    Raises:
        TypeError: `value` is not a str.
        PayloadTooLarge: `value` has 1000 or more characters or UTF-8 bytes.
    """
    if not isinstance(value, str):
        raise TypeError(f"DHT values are str, not {type(value).__name__}")
    # The character count is a cheap lower bound of the byte count; check it first so a
    # huge string is refused without encoding it.
    if len(value) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"DHT value has {len(value)} characters; at most {MAX_VALUE_BYTES} are allowed"
        )
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"DHT value has {size} UTF-8 bytes; at most {MAX_VALUE_BYTES} are allowed"
        )
    return value


def is_dht_key(key: object) -> bool:
    """Return True when `key` is a 40-character lowercase hex str (a well-formed key)."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


def check_key(key: object) -> str:
    """Check that `key` is a well-formed DHT key and return it.

    Uppercase hex is refused rather than normalised: Grape's keys are lowercase, and
    accepting two spellings of one key would let callers cache the same item twice.

    Args:
        key: the candidate key.

    Returns:
        `key`, unchanged.

    Raises:
        TypeError: `key` is not a str.
        ValueError: `key` is not 40 lowercase hex characters.
    """
    if not isinstance(key, str):
        raise TypeError(f"DHT keys are str, not {type(key).__name__}")
    if _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"not a DHT key (40 lowercase hex characters): {key[:60]!r}")
    return key
