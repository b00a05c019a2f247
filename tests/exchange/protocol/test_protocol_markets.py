"""Market identity: the symbol rule, each market's names, orders signed for one market,
and the ``markets`` reply."""

from __future__ import annotations

from typing import Any

import pytest
from support.keys import MATCHER_KEY, client_key

from exchange.protocol import (
    DEFAULT_MARKET,
    MARKET_FIELD,
    MARKET_ORDER_DOMAIN,
    ORDER_DOMAIN,
    AuthFailed,
    BadMessage,
    Head,
    MarketInfo,
    market_names,
    sign_head,
    sign_object,
    sign_order,
    signed_message,
    verify_order,
)
from exchange.runtime import market_path
from orderbook_core import DEFAULT_SPEC, MAX_MARKET_LENGTH, MarketSpec, check_market

ORDER = {"clientId": "alice", "orderId": "a1", "side": "buy", "price": "100", "amount": "1"}
KEY = client_key("alice")


@pytest.mark.parametrize("symbol", ["BTC-USD", "ETH-USD", "A", "X1", "1INCH-USDT", "A" * 20])
def test_market_symbols_that_are_taken(symbol: str) -> None:
    assert check_market(symbol) == symbol
    assert MarketSpec(market=symbol).market == symbol


@pytest.mark.parametrize(
    "symbol",
    ["", "btc-usd", "BTC_USD", "BTC:USD", "BTC USD", "-BTC", "BTC-", "A" * 21, "ÉTH", None, 7],
)
def test_market_symbols_that_are_refused(symbol: Any) -> None:
    with pytest.raises(ValueError, match="market"):
        check_market(symbol)
    if isinstance(symbol, str):
        with pytest.raises(ValueError, match="market"):
            MarketSpec(market=symbol)
    assert MAX_MARKET_LENGTH == 20


def test_the_default_market_keeps_the_seeds_names() -> None:
    assert DEFAULT_MARKET == DEFAULT_SPEC.market == "BTC-USD"
    names = market_names()
    assert names == market_names(DEFAULT_MARKET)
    assert tuple(names)[1:] == (
        "submit_order",
        "process_order",
        "orderbook_head",
        "orderbook_updated",
    )


def test_another_market_has_the_same_names_with_its_symbol_appended() -> None:
    names = market_names("ETH-USD")
    assert names.market == "ETH-USD"
    assert names.submit_order == "submit_order:ETH-USD"
    assert names.process_order == "process_order:ETH-USD"
    assert names.orderbook_head == "orderbook_head:ETH-USD"
    assert names.orderbook_updated == "orderbook_updated:ETH-USD"
    assert not set(names[1:]) & set(market_names("SOL-USD")[1:])
    with pytest.raises(ValueError, match="upper-case"):
        market_names("eth-usd")


def test_default_files_of_another_market_have_its_symbol() -> None:
    assert market_path("data/submit_journal.db", DEFAULT_MARKET) == "data/submit_journal.db"
    assert market_path("data/submit_journal.db", "ETH-USD") == "data/submit_journal-ETH-USD.db"
    assert market_path("sequencer.pub", "ETH-USD") == "sequencer-ETH-USD.pub"


def test_an_order_signed_for_a_market_is_taken_there_only() -> None:
    order = sign_order(ORDER, KEY, "ETH-USD")
    assert order[MARKET_FIELD] == "ETH-USD"
    assert verify_order(order, "ETH-USD") == (ORDER, order["pubKey"])
    for elsewhere in ("SOL-USD", DEFAULT_MARKET):
        with pytest.raises(AuthFailed, match="market"):
            verify_order(order, elsewhere)
    with pytest.raises(AuthFailed, match="market"):
        verify_order(order)  # the default market's sequencer


def test_the_market_is_signed_not_just_named() -> None:
    moved = {**sign_order(ORDER, KEY, "ETH-USD"), MARKET_FIELD: "SOL-USD"}
    with pytest.raises(AuthFailed, match="sig"):
        verify_order(moved, "SOL-USD")
    # The same fields signed under the old domain are not a dex-order/2 signature.
    old = sign_object(ORDER_DOMAIN, {**sign_order(ORDER, KEY, "ETH-USD")}, KEY)
    with pytest.raises(AuthFailed, match="sig"):
        verify_order(old, "ETH-USD")


def test_an_order_with_no_market_is_the_default_markets_only() -> None:
    order = sign_order(ORDER, KEY)
    assert MARKET_FIELD not in order
    assert verify_order(order)[0] == ORDER
    assert verify_order(order, DEFAULT_MARKET)[0] == ORDER
    with pytest.raises(AuthFailed, match="required on market ETH-USD"):
        verify_order(order, "ETH-USD")
    # Naming the default market explicitly (dex-order/2) is taken too.
    assert verify_order(sign_order(ORDER, KEY, DEFAULT_MARKET))[0] == ORDER
    # A null market is not "no market".
    with pytest.raises(AuthFailed, match="market"):
        verify_order({**order, MARKET_FIELD: None})


def test_the_signed_bytes_of_a_market_order() -> None:
    order = sign_order(ORDER, KEY, "ETH-USD")
    message = signed_message(MARKET_ORDER_DOMAIN, order)
    assert message.startswith(b'dex-order/2\n{"amount":"1","clientId":"alice","market":"ETH-USD",')
    KEY.public_key().verify(bytes.fromhex(order["sig"]), message)


def test_the_markets_reply_round_trips() -> None:
    head = sign_head(Head(3, "ab" * 20), MATCHER_KEY)
    info = MarketInfo.of(MarketSpec(market="ETH-USD"), head)
    assert (info.spec["tickSize"], info.spec["lotSize"]) == ("0.01", "0.001")
    assert MarketInfo.from_wire(info.to_wire()) == info


@pytest.mark.parametrize(
    "change",
    [
        {"market": "eth"},
        {"spec": {"tickSize": "0.01"}},
        {"head": {"seq": 1, "root": None}},
        {"extra": 1},
    ],
)
def test_a_bad_markets_reply_is_refused(change: dict[str, Any]) -> None:
    wire = MarketInfo.of(DEFAULT_SPEC, Head(0, None)).to_wire()
    assert isinstance(wire, dict)
    with pytest.raises(BadMessage):
        MarketInfo.from_wire({**wire, **change})
