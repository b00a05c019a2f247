"""Garbage at the client's two parsers: its command line and `orderbook_updated`."""

from __future__ import annotations

import re

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.client import ClientNode, parse_client_args
from exchange.protocol import ArgumentError, BadRootHash, error_string
from transports import MemoryNetwork, MemoryTransport

words = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda k, v: f"{k}={v}",
            st.sampled_from(["clientId", "type", "side", "amount", "price", "tif", "op", "grape"]),
            st.text(max_size=20),
        ),
        st.sampled_from(["--once", "--json", "--timeout", "--timeout=1", "-h"]),
    ),
    max_size=8,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(words)
@settings(max_examples=300, deadline=None)
def test_command_line_garbage_gives_argument_error_or_args(argv: list[str]) -> None:
    outcome: object
    try:
        outcome = parse_client_args(argv)
    except ArgumentError as exc:
        outcome = exc
    assert str(outcome)  # a message for the user, or arguments with a client id


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_orderbook_updated_garbage_is_refused_and_changes_nothing(payload: object) -> None:
    async def check() -> None:
        async with MemoryTransport(MemoryNetwork()) as transport:
            node = ClientNode(transport, "alice")
            if isinstance(payload, str) and re.fullmatch("[0-9a-f]{40}", payload):
                assert await node.on_updated(payload) is None
            else:
                with pytest.raises(BadRootHash) as info:
                    await node.on_updated(payload)
                assert error_string(info.value).startswith("ERR_BAD_REQUEST: ")
            assert node.replica.seq == 0

    anyio.run(check)


@pytest.mark.anyio
async def test_orderbook_updated_well_formed_unknown_hash_is_accepted_then_ignored() -> None:
    async with MemoryTransport(MemoryNetwork()) as transport:
        node = ClientNode(transport, "alice")
        assert await node.on_updated("ab" * 20) is None
        assert await node.replica.sync() is None
        assert node.replica.seq == 0
