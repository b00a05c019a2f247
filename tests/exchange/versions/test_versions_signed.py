"""Versions are the matcher's: each root signed by its key, and readers given the key
take no other."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.keys import MATCHER_KEY, named_key

from exchange.protocol import InvalidVersion, public_key_hex
from exchange.versions import (
    RootDoc,
    VersionPublisher,
    VersionReader,
    decode_root,
    encode_root,
    sign_root,
    verify_root,
)
from orderbook_core import DEFAULT_SPEC, NewOrder, OrderBook, Side
from transports import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio

ROOT = RootDoc(market="BTC-USD", seq=3, first=3, prev=None, book="ab" * 20, events=None,
               commands=None, tick="0.01", lot="0.001")  # fmt: skip
TRUSTED = MATCHER_KEY.public_key()


def test_a_signed_root_names_the_key_and_verifies() -> None:
    signed = sign_root(ROOT, MATCHER_KEY)
    assert signed.key == public_key_hex(MATCHER_KEY)
    text = encode_root(signed)
    assert len(text) < 1000
    assert decode_root(text) == signed
    verify_root(decode_root(text), TRUSTED)
    # The signature is over the documented bytes: the root's text without "sig".
    body = {k: v for k, v in json.loads(text).items() if k != "sig"}
    message = "dex-root/1\n" + json.dumps(body, sort_keys=True, separators=(",", ":"))
    TRUSTED.verify(bytes.fromhex(str(signed.sig)), message.encode())
    assert sign_root(ROOT, MATCHER_KEY) == signed  # deterministic: a republish is equal


@pytest.mark.parametrize(
    ("root", "problem"),
    [
        (ROOT, "not signed by the matcher"),
        (sign_root(ROOT, named_key("forger")), "signed by another key"),
        (dataclasses.replace(sign_root(ROOT, MATCHER_KEY), seq=4), "not a valid signature"),
        (dataclasses.replace(sign_root(ROOT, MATCHER_KEY), book="cd" * 20), "not a valid"),
        (
            dataclasses.replace(sign_root(ROOT, named_key("forger")), key=public_key_hex(TRUSTED)),
            "not a valid signature",
        ),
    ],
)
def test_a_root_not_signed_by_the_matcher_is_refused(root: RootDoc, problem: str) -> None:
    with pytest.raises(InvalidVersion, match=problem):
        verify_root(root, TRUSTED)


@pytest.mark.parametrize(
    ("key", "sig"), [("ab" * 32, None), (None, "ab" * 64), ("AB" * 32, "ab" * 64)]
)
def test_key_and_sig_come_together_in_their_shape(key: str | None, sig: str | None) -> None:
    with pytest.raises(ValueError, match=r"key|sig"):
        encode_root(dataclasses.replace(ROOT, key=key, sig=sig))


async def test_a_reader_given_the_key_takes_only_versions_it_signed() -> None:
    network = MemoryNetwork()
    book = OrderBook(DEFAULT_SPEC)
    events = book.apply(NewOrder(1, 1, "a", "a-1", Side.BUY, 100, 1000))
    roots = {}
    async with MemoryTransport(network) as transport:
        for name, key in (("matcher", MATCHER_KEY), ("forger", named_key("f")), ("none", None)):
            publisher = VersionPublisher(transport, DEFAULT_SPEC, signing_key=key)
            roots[name] = await publisher.publish(book, events, seq=1, first=1)
        reader = VersionReader(transport, DEFAULT_SPEC, matcher_key=TRUSTED)
        assert (await reader.fetch(roots["matcher"])).book == book
        for name in ("forger", "none"):
            with pytest.raises(InvalidVersion):
                await reader.fetch(roots[name])
        unknown = VersionReader(transport, DEFAULT_SPEC, matcher_key=lambda: None)
        with pytest.raises(InvalidVersion, match="not known yet"):
            await unknown.fetch(roots["matcher"])
        anyone = VersionReader(transport, DEFAULT_SPEC)  # tools: any signer, or none
        for root in roots.values():
            assert (await anyone.fetch(root)).book == book
