"""What is signed, and how: Ed25519 over domain-separated canonical JSON.

Authority is proven, not asserted. Three kinds of message carry an Ed25519 signature
(RFC 8032, the pure variant: the message itself is signed, no pre-hash):

- a client's ``submit_order`` payload, by the client's key (bound to its ``clientId``
  at its first accepted command, trust on first use);
- a ``process_order`` request, by the sequencer's key (the only key the matcher takes);
- an ``orderbook_head`` reply, by the matcher's key (naming the exchange instance: the
  sequencer's key);
- a version's root document in the DHT, by the matcher's key (`exchange.versions`).

Each signed message is ``utf8(<domain> + "\\n" + canonical_json(<object without
"sig">))``: the object as sent, minus its ``sig`` field, in the project's one canonical
JSON (keys sorted, no whitespace, ASCII). The domain (``dex-order/2``, ``dex-order/1``,
``dex-process/1``, ``dex-head/2``, ``dex-root/1``) keeps a signature of one kind from
being replayed as another. Keys and signatures travel as lowercase hex: a public key is
its 32 raw bytes (64 hex), a signature its 64 bytes (128 hex). docs/protocol.md
("Signatures") is the specification; a Node peer signs and verifies with its own
``crypto`` module.

Pure: no I/O (key files are `exchange.runtime`). Verification raises `AuthFailed`
(``ERR_AUTH``), never returns a verdict to forget to check.

Keys are `cryptography` objects (key files, generation); signing and verification run in
libsodium (PyNaCl) on the keys' raw bytes: verification twice as fast as OpenSSL's on
this path (the sequencer's largest cost per order), signing a third faster. Both are
RFC 8032; libsodium also refuses small-order keys and ``R`` points and non-canonical
encodings, which no honest signer produces (OpenSSL took a small-order key's forgery).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_sign, crypto_sign_open
from nacl.exceptions import BadSignatureError

from exchange.protocol._errors import AuthFailed
from exchange.protocol._messages import Head
from exchange.protocol._names import DEFAULT_MARKET
from orderbook_core import canonical_json

__all__ = [
    "HEAD_DOMAIN",
    "MARKET_FIELD",
    "MARKET_ORDER_DOMAIN",
    "ORDER_DOMAIN",
    "PROCESS_DOMAIN",
    "PUBLIC_KEY_FIELD",
    "ROOT_DOMAIN",
    "SIGNATURE_FIELD",
    "public_key_from_hex",
    "public_key_hex",
    "sign_head",
    "sign_object",
    "sign_order",
    "signed_message",
    "verify_head",
    "verify_object",
    "verify_order",
]

ORDER_DOMAIN: Final = "dex-order/1"
"""The domain of a client's signed ``submit_order`` payload that names no market: taken
by the default market's sequencer only (the seed's peers sign these)."""
MARKET_ORDER_DOMAIN: Final = "dex-order/2"
"""The domain of a client's signed ``submit_order`` payload that names its market (the
``market`` field): taken by that market's sequencer only."""
PROCESS_DOMAIN: Final = "dex-process/1"
"""The domain of the sequencer's signed ``process_order`` request."""
HEAD_DOMAIN: Final = "dex-head/2"
"""The domain of the matcher's signed ``orderbook_head`` reply (``/2``: it covers the
``instance`` field; ``dex-head/1`` heads had none and are not accepted)."""
ROOT_DOMAIN: Final = "dex-root/1"
"""The domain of the matcher's signature in a version's root document."""

SIGNATURE_FIELD: Final = "sig"
"""The field that carries the signature (128 lowercase hex) in every signed object."""
MARKET_FIELD: Final = "market"
"""The field of a ``dex-order/2`` payload that names the market it is signed for."""
PUBLIC_KEY_FIELD: Final = "pubKey"
"""The field of a signed ``submit_order`` payload that names the signer's public key."""

_KEY_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_SIG_RE: Final = re.compile(r"^[0-9a-f]{128}$")


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The wire form of `key`'s public key: its 32 raw bytes as 64 lowercase hex."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from_hex(text: object, field: str = PUBLIC_KEY_FIELD) -> Ed25519PublicKey:
    """Parse a public key's wire form.

    Raises:
        AuthFailed: not 64 lowercase hex (ERR_AUTH names `field`).
    """
    if not isinstance(text, str) or not _KEY_RE.match(text):
        raise AuthFailed(f"{field}: must be an Ed25519 public key, 64 lowercase hex")
    return _public_key(text)


@functools.lru_cache(maxsize=4096)
def _public_key(text: str) -> Ed25519PublicKey:
    """A client signs every order with the same key: it is parsed once (the signature
    is still verified in full each time)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def signed_message(domain: str, obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature of `obj` covers: ``domain + "\\n" + canonical JSON``.

    The ``sig`` field, if present, is left out; every other field is covered.
    """
    body = {k: v for k, v in obj.items() if k != SIGNATURE_FIELD}
    return f"{domain}\n{canonical_json(body)}".encode()


def sign_object(domain: str, obj: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return a copy of `obj` with its ``sig`` by `key` (any old ``sig`` replaced)."""
    # libsodium's sign (Ed25519 is deterministic: OpenSSL's signature, byte for byte,
    # in two thirds of its time); its secret key is the seed then the public key.
    secret = key.private_bytes_raw() + key.public_key().public_bytes_raw()
    signature = crypto_sign(signed_message(domain, obj), secret)[:64].hex()
    return {**{k: v for k, v in obj.items() if k != SIGNATURE_FIELD}, SIGNATURE_FIELD: signature}


def verify_object(
    domain: str, obj: Mapping[str, Any], key: Ed25519PublicKey, *, what: str
) -> dict[str, Any]:
    """Check `obj`'s ``sig`` against `key`; return `obj` without it.

    Args:
        what: names the signer in the refusal (e.g. "the sequencer").

    Raises:
        AuthFailed: the signature is missing, malformed, or not `key`'s over `obj`.
    """
    return _verify(domain, obj, key.public_bytes_raw(), what)


def _verify(domain: str, obj: Mapping[str, Any], key: bytes, what: str) -> dict[str, Any]:
    """`verify_object` on the key's 32 raw bytes."""
    signature = obj.get(SIGNATURE_FIELD)
    if not isinstance(signature, str) or not _SIG_RE.match(signature):
        raise AuthFailed(f"{SIGNATURE_FIELD}: missing or not 128 lowercase hex")
    body = {k: v for k, v in obj.items() if k != SIGNATURE_FIELD}
    message = f"{domain}\n{canonical_json(body)}".encode()
    try:
        # libsodium's verify of the detached signature (its "signed message" form is
        # the signature then the message): every signature checked in full.
        crypto_sign_open(bytes.fromhex(signature) + message, key)
    except BadSignatureError:
        raise AuthFailed(f"{SIGNATURE_FIELD}: not a valid signature by {what}") from None
    return body


def sign_order(
    payload: Mapping[str, Any], key: Ed25519PrivateKey, market: str | None = None
) -> dict[str, Any]:
    """Return the ``submit_order`` payload signed by `key`, with its ``pubKey``: for
    `market` (its ``market`` field, ``dex-order/2``), or with no market (``dex-order/1``,
    which only the default market takes)."""
    body = {**payload, PUBLIC_KEY_FIELD: public_key_hex(key)}
    if market is None:
        return sign_object(ORDER_DOMAIN, body, key)
    return sign_object(MARKET_ORDER_DOMAIN, {**body, MARKET_FIELD: market}, key)


def verify_order(payload: object, market: str = DEFAULT_MARKET) -> tuple[dict[str, Any], str]:
    """Check a signed ``submit_order`` payload by the key it names, for `market`.

    Whether that key is the ``clientId``'s is the sequencer's question (it holds the
    bindings); this only proves that the holder of ``pubKey`` signed this very payload
    for this very market: a ``dex-order/2`` payload naming `market`, or a ``dex-order/1``
    payload (no ``market``) when `market` is the default market.

    Returns:
        The payload without ``pubKey``, ``market`` and ``sig`` (what the core's
        validator takes), and the public key (64 hex).

    Raises:
        AuthFailed: not an object, no ``pubKey``, no or a bad ``sig``, or signed for
            another market.
    """
    if not isinstance(payload, dict):
        raise AuthFailed("submit_order payload: must be a signed object")
    key_hex = payload.get(PUBLIC_KEY_FIELD)
    if key_hex is None:
        raise AuthFailed(f"{PUBLIC_KEY_FIELD}: required (orders are signed)")
    named = payload.get(MARKET_FIELD)
    if named is None and MARKET_FIELD not in payload:
        if market != DEFAULT_MARKET:
            raise AuthFailed(
                f"{MARKET_FIELD}: required on market {market} (sign {MARKET_ORDER_DOMAIN}); "
                f"{ORDER_DOMAIN} orders are for {DEFAULT_MARKET} only"
            )
        domain = ORDER_DOMAIN
    elif named != market:
        # (its text cut short: a refusal's detail is logged)
        raise AuthFailed(f"{MARKET_FIELD}: signed for market {named!r:.40}, this is {market}")
    else:
        domain = MARKET_ORDER_DOMAIN
    if not isinstance(key_hex, str) or not _KEY_RE.match(key_hex):
        raise AuthFailed(f"{PUBLIC_KEY_FIELD}: must be an Ed25519 public key, 64 lowercase hex")
    body = _verify(domain, payload, bytes.fromhex(key_hex), PUBLIC_KEY_FIELD)
    del body[PUBLIC_KEY_FIELD]
    body.pop(MARKET_FIELD, None)
    return body, str(key_hex)


def sign_head(head: Head, key: Ed25519PrivateKey) -> Head:
    """`head` with the matcher's public key and its signature (over seq, root, key and
    instance: the exchange instance it serves, `head.instance`, null when unknown)."""
    body = {"seq": head.seq, "root": head.root, "key": public_key_hex(key)}
    body["instance"] = head.instance
    signed = sign_object(HEAD_DOMAIN, body, key)
    return Head(head.seq, head.root, signed["key"], signed[SIGNATURE_FIELD], head.instance)


def verify_head(head: Head, trusted: Ed25519PublicKey | None) -> Ed25519PublicKey:
    """Check that the matcher signed `head`: by `trusted`, or by the key it names when
    none is trusted yet (the caller then decides whether it trusts that key for
    `head.instance`: pinned per exchange instance, docs/protocol.md "Trust").

    Returns:
        The key that signed it.

    Raises:
        AuthFailed: unsigned, signed by another key than `trusted`, or a bad signature.
    """
    if head.key is None or head.sig is None:
        raise AuthFailed("orderbook_head reply: not signed (no key and sig)")
    key = public_key_from_hex(head.key, "key")
    if trusted is not None and public_key_hex(trusted) != head.key:
        raise AuthFailed("key: not the matcher key this client trusts")
    verify_object(HEAD_DOMAIN, head.to_wire_object(), key, what="the matcher")
    return key
