"""Garbage at the client's two parsers: its command line and `orderbook_updated`."""

from __future__ import annotations

import os
import re

import anyio
import pytest
from hypothesis import example, given, settings
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


ORDER_KEYS = {"type", "side", "amount", "price", "tif", "op"}


@given(words)
@example(["--timeout", "0\n"])  # once a message of two lines
@example(["clientId=a", "type=Buy", "amount=1", "--once", "--json"])
@example(["clientId=a", "op=cancel", "orderId=x"])
@settings(max_examples=300, deadline=None)
def test_command_line_garbage_gives_argument_error_or_args(argv: list[str]) -> None:
    problem: str | None = None
    try:
        args = parse_client_args(argv, default_client_id="watcher-1")
    except ArgumentError as exc:
        problem = str(exc)
    if problem is not None:
        # A message for the user: one line, saying what is wrong.
        assert problem.strip()
        assert "\n" not in problem
        return
    if "-h" in argv or "--help" in argv:
        assert args.help
        return
    assert not args.help
    # Every flag and word given is in the result, as given; nothing is made up.
    assert args.once == ("--once" in argv)
    assert args.json == ("--json" in argv)
    assert 0 < args.timeout <= 3600
    keys = {word.partition("=")[0].lower() for word in argv if "=" in word}
    client_ids = [w.partition("=")[2] for w in argv if w.lower().startswith("clientid=")]
    assert args.client_id == (client_ids[0] if client_ids else "watcher-1")
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.client_id)
    assert args.grape.startswith(("http://", "https://"))
    if args.order is None:
        assert not keys & {k.lower() for k in ORDER_KEYS}
        return
    # An order belongs to the client that was named, and is a new order or a cancel.
    assert client_ids
    assert args.order["clientId"] == args.client_id
    if args.order.get("op") == "cancel":
        assert set(args.order) == {"clientId", "op", "orderId"}
    else:
        assert args.order["side"] in ("buy", "sell")
        assert "amount" in args.order


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


def test_the_fuzz_tests_run_derandomized_unless_the_run_is_long() -> None:
    # tests/conftest.py loads its profile before this module's `@settings(...)` are made,
    # so they inherit it: the same examples on every CI run, at random in `make chaos`.
    long = os.environ.get("CHAOS_PROFILE") == "long"
    assert settings().derandomize is not long
    assert settings(max_examples=300, deadline=None).derandomize is not long
    assert settings().database is None
