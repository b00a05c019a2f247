"""Fixed Ed25519 keys for tests, and signing as the real parties do.

The keys are derived from names (sha256 of a label), so a test and the process it
starts agree on them without files; nothing here is a secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.protocol import (
    PROCESS_DOMAIN,
    Head,
    public_key_hex,
    sign_head,
    sign_object,
    sign_order,
    verify_head,
)


def named_key(label: str) -> Ed25519PrivateKey:
    """The key named `label`: the same in every run."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"dex-test:{label}".encode()).digest()
    )


SEQUENCER_KEY = named_key("sequencer")
"""The sequencer's key in the in-process rigs; the matcher trusts its public half."""
SEQUENCER_PUBLIC = SEQUENCER_KEY.public_key()


def client_key(client_id: str) -> Ed25519PrivateKey:
    """The key a test client `client_id` signs with."""
    return named_key(f"client:{client_id}")


def signed(
    payload: Mapping[str, Any], key: Ed25519PrivateKey | None = None, market: str | None = None
) -> dict[str, Any]:
    """`payload` signed as its client does (`client_key` of its clientId by default),
    for `market` (``dex-order/2``) or with no market (``dex-order/1``: the default's)."""
    return sign_order(payload, key or client_key(str(payload["clientId"])), market)


def by_sequencer(payload: Any) -> Any:
    """A ``process_order`` payload signed by the rigs' sequencer (other values as they are,
    so a test of bad shapes still sends its bad shape)."""
    if not isinstance(payload, dict):
        return payload
    return sign_object(PROCESS_DOMAIN, payload, SEQUENCER_KEY)


MATCHER_KEY = named_key("matcher")
"""The matcher's key in the in-process rigs (heads are signed with it); the same after a
restart, as the real matcher's key file is."""


def verified_head(reply: Any) -> dict[str, Any]:
    """An ``orderbook_head`` reply checked against `MATCHER_KEY`, as ``{"seq", "root"}``."""
    head = Head.from_wire(reply)
    verify_head(head, MATCHER_KEY.public_key())
    return {"seq": head.seq, "root": head.root}


INSTANCE = public_key_hex(SEQUENCER_KEY)
"""The rigs' exchange instance, as their matcher's heads name it (the sequencer's key)."""


def signed_head(seq: int, root: str | None) -> Any:
    """An ``orderbook_head`` reply as the rigs' matcher signs it (`MATCHER_KEY`, naming
    the rigs' exchange instance)."""
    return sign_head(Head(seq, root, instance=INSTANCE), MATCHER_KEY).to_wire()
