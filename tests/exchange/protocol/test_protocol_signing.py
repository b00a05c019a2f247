"""What is signed: the exact bytes, each field covered, domains kept apart, garbage refused."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from support.keys import named_key

from exchange.protocol import (
    HEAD_DOMAIN,
    ORDER_DOMAIN,
    PROCESS_DOMAIN,
    AuthFailed,
    BadMessage,
    Head,
    Refused,
    public_key_from_hex,
    public_key_hex,
    sign_head,
    sign_object,
    sign_order,
    signed_message,
    verify_head,
    verify_object,
    verify_order,
)

KEY = named_key("signing")
OTHER = named_key("other")
ORDER = {"clientId": "alice", "orderId": "a1", "side": "buy", "price": "100", "amount": "1"}


def test_the_signed_bytes_are_the_domain_a_newline_and_canonical_json_without_sig() -> None:
    payload = {"b": 1, "a": "x", "sig": "ignored"}
    assert signed_message("dex-order/1", payload) == b'dex-order/1\n{"a":"x","b":1}'


def test_a_signed_order_carries_its_public_key_and_verifies() -> None:
    payload = sign_order(ORDER, KEY)
    assert payload["pubKey"] == public_key_hex(KEY)
    assert len(payload["pubKey"]) == 64
    assert len(payload["sig"]) == 128
    body, key_hex = verify_order(payload)
    assert body == ORDER
    assert key_hex == public_key_hex(KEY)
    # The signature is Ed25519 over exactly the documented bytes (pubKey included).
    message = f'{ORDER_DOMAIN}\n{{"amount":"1","clientId":"alice","orderId":"a1",'
    message += f'"price":"100","pubKey":"{public_key_hex(KEY)}","side":"buy"}}'
    KEY.public_key().verify(bytes.fromhex(payload["sig"]), message.encode())


@pytest.mark.parametrize(
    "change",
    [
        {"orderId": "a2"},
        {"price": "101"},
        {"amount": "1.0"},
        {"clientId": "bob"},
        {"op": "cancel"},
        {"pubKey": public_key_hex(OTHER)},
    ],
)
def test_every_field_is_covered(change: dict[str, Any]) -> None:
    with pytest.raises(AuthFailed):
        verify_order({**sign_order(ORDER, KEY), **change})


def test_a_signature_of_one_kind_is_no_signature_of_another() -> None:
    batch = {"seq": 1, "ts": 1, "command": ORDER}
    signed = sign_object(PROCESS_DOMAIN, batch, KEY)
    assert verify_object(PROCESS_DOMAIN, signed, KEY.public_key(), what="k") == batch
    for domain in (ORDER_DOMAIN, HEAD_DOMAIN):
        with pytest.raises(AuthFailed, match="not a valid signature by k"):
            verify_object(domain, signed, KEY.public_key(), what="k")
    with pytest.raises(AuthFailed):
        verify_object(PROCESS_DOMAIN, signed, OTHER.public_key(), what="k")


def test_auth_failures_are_err_auth_refusals() -> None:
    with pytest.raises(Refused) as info:
        verify_order(ORDER)
    assert str(info.value) == "ERR_AUTH: pubKey: required (orders are signed)"
    assert info.value.code == "ERR_AUTH"


@pytest.mark.parametrize("text", ["", "ab", "AB" * 32, "g" * 64, 7, None, "a" * 65])
def test_a_public_key_is_64_lowercase_hex(text: object) -> None:
    with pytest.raises(AuthFailed, match="pubKey: must be an Ed25519 public key"):
        public_key_from_hex(text)


def test_sign_object_replaces_an_old_signature() -> None:
    once = sign_object(HEAD_DOMAIN, {"seq": 1}, KEY)
    assert sign_object(HEAD_DOMAIN, once, KEY) == once
    assert sign_object(HEAD_DOMAIN, once, OTHER)["sig"] != once["sig"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
_near = st.fixed_dictionaries(
    {"pubKey": st.sampled_from([public_key_hex(KEY), "x", 1]), "sig": _json | st.text()},
    optional={"clientId": _json},
)


@given(payload=_json | _near)
def test_garbage_is_refused_with_auth_failed_only(payload: Any) -> None:
    with pytest.raises(AuthFailed):
        verify_order(payload)


def test_keys_made_by_the_library_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    assert public_key_hex(public_key_from_hex(public_key_hex(key))) == public_key_hex(key)


INSTANCE = "cd" * 32
"""An exchange instance (the sequencer's public key) a head names."""


def test_a_signed_head_verifies_by_its_key_or_the_trusted_one() -> None:
    head = sign_head(Head(3, "ab" * 20, instance=INSTANCE), KEY)
    assert head.key == public_key_hex(KEY)
    assert head.instance == INSTANCE
    assert public_key_hex(verify_head(head, None)) == public_key_hex(KEY)  # first use
    assert public_key_hex(verify_head(head, KEY.public_key())) == public_key_hex(KEY)
    assert Head.from_wire(head.to_wire()) == head
    assert HEAD_DOMAIN == "dex-head/2"  # the instance is signed: a new format
    key = public_key_hex(KEY)
    body = f'{{"instance":"{INSTANCE}","key":"{key}","root":"{"ab" * 20}","seq":3}}'
    KEY.public_key().verify(bytes.fromhex(str(head.sig)), f"{HEAD_DOMAIN}\n{body}".encode())
    # Before the sequencer's key is known, the instance is signed as null.
    early = sign_head(Head(0, None), KEY)
    assert early.to_wire() == {"seq": 0, "root": None, "key": key, "instance": None,
                               "sig": early.sig}  # fmt: skip
    verify_head(Head.from_wire(early.to_wire()), KEY.public_key())


@pytest.mark.parametrize(
    "forged",
    [
        Head(3, "ab" * 20),  # unsigned
        sign_head(Head(3, "ab" * 20), OTHER),  # another matcher
        sign_head(Head(3, "ab" * 20), KEY)._replace(seq=4),
        sign_head(Head(3, "ab" * 20), KEY)._replace(root="cd" * 20),
        sign_head(Head(3, "ab" * 20), OTHER)._replace(key=public_key_hex(KEY)),
        # Another exchange instance under the same signature: the instance is signed.
        sign_head(Head(3, "ab" * 20, instance=INSTANCE), KEY)._replace(instance="ef" * 32),
        sign_head(Head(3, "ab" * 20, instance=INSTANCE), KEY)._replace(instance=None),
    ],
)
def test_a_forged_head_is_refused(forged: Head) -> None:
    with pytest.raises(AuthFailed):
        verify_head(forged, KEY.public_key())


@pytest.mark.parametrize(
    "reply",
    [
        {"seq": 1, "root": "ab" * 20, "key": "AB" * 32},
        {"seq": 1, "root": "ab" * 20, "sig": "ab"},
        {"seq": 1, "root": "ab" * 20, "key": 5},
    ],
)
def test_head_key_and_sig_have_a_shape(reply: Any) -> None:
    with pytest.raises(BadMessage):
        Head.from_wire(reply)


# Verification runs in libsodium, signing in OpenSSL (`cryptography`): both RFC 8032, but
# libsodium is the stricter (small-order and non-canonical points refused). Every signature
# a real key makes must still verify, and the edge cases OpenSSL lets through must not.

_L = 2**252 + 27742317777372353535851937790883648493
"""The order of Ed25519's base point: a canonical ``S`` is below it."""
_IDENTITY = "01" + "00" * 31
"""The neutral point's encoding: a small-order "public key" (no private key makes it)."""
_IDENTITY_NON_CANONICAL = (2**255 - 18).to_bytes(32, "little").hex()
"""The neutral point again, its y encoded as p + 1 (>= p: not canonical)."""


@given(seed=st.binary(min_size=32, max_size=32), obj=st.dictionaries(st.text(max_size=6), _json))
def test_every_signature_a_key_makes_verifies(seed: bytes, obj: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signed = sign_object(PROCESS_DOMAIN, obj, key)
    body = {k: v for k, v in obj.items() if k != "sig"}
    assert verify_object(PROCESS_DOMAIN, signed, key.public_key(), what="k") == body
    order = sign_order(ORDER, key)
    assert verify_order(order) == (ORDER, public_key_hex(key))


@pytest.mark.parametrize("key", [_IDENTITY, _IDENTITY_NON_CANONICAL])
def test_a_small_order_key_signs_nothing(key: str) -> None:
    # R = the neutral point and S = 0 satisfy [S]B = R + [k]A for A the neutral point and
    # every message: OpenSSL takes this "signature" of anything; libsodium refuses the key.
    forged = {**ORDER, "pubKey": key, "sig": _IDENTITY + "00" * 32}
    with pytest.raises(AuthFailed, match="sig: not a valid signature by pubKey"):
        verify_order(forged)
    with pytest.raises(AuthFailed, match="not a valid signature by the matcher"):
        verify_object(ORDER_DOMAIN, forged, public_key_from_hex(key), what="the matcher")


def test_a_signature_with_a_non_canonical_s_is_refused() -> None:
    payload = sign_order(ORDER, KEY)
    signature = bytes.fromhex(payload["sig"])
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + _L).to_bytes(32, "little")  # the same S mod L
    with pytest.raises(AuthFailed, match="sig: not a valid signature"):
        verify_order({**payload, "sig": malleated.hex()})
    assert verify_order(payload)[0] == ORDER  # the canonical one verifies


@given(seed=st.binary(min_size=32, max_size=32), obj=st.dictionaries(st.text(max_size=6), _json))
def test_a_signature_is_openssls_byte_for_byte(seed: bytes, obj: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signed = sign_object(HEAD_DOMAIN, obj, key)
    assert bytes.fromhex(signed["sig"]) == key.sign(signed_message(HEAD_DOMAIN, obj))
