"""Library use of the matching core, with no network at all.

Run: `.venv/bin/python examples/core_basics.py`

The core is sans-I/O: you hand `OrderBook.apply` a typed command (the sequence number
and timestamp are inputs you choose) and get back a tuple of events. Untrusted JSON
goes through `parse_command` first, which names the field and the rule it breaks.
"""

from __future__ import annotations

from orderbook_core import (
    DEFAULT_SPEC,
    OrderBook,
    Side,
    Trade,
    ValidationError,
    decode_book,
    encode_book,
    event_to_wire,
    parse_command,
)


def main() -> None:
    spec = DEFAULT_SPEC  # BTC-USD, tick 0.01, lot 0.001
    book = OrderBook(spec)
    payloads = [
        {"clientId": "alice", "orderId": "a1", "type": "Sell", "price": "100", "amount": "2"},
        {"clientId": "bob", "orderId": "b1", "side": "sell", "price": "101.5", "amount": "1"},
        {"clientId": "carol", "orderId": "c1", "side": "buy", "price": "101.5", "amount": "2.5"},
        {"clientId": "dave", "orderId": "d1", "side": "buy", "price": "99", "amount": "1"},
    ]
    for seq, payload in enumerate(payloads, start=1):
        command = parse_command(payload, spec, seq=seq, ts=1_700_000_000_000 + seq)
        for event in book.apply(command):
            wire = event_to_wire(event, spec)
            if isinstance(event, Trade):
                print(f"seq {seq}: trade {wire['amount']} @ {wire['price']}", end="")
                print(f" ({wire['takerClientId']} takes {wire['makerClientId']})")
            else:
                print(f"seq {seq}: {wire['type']} {wire['clientId']}/{wire['orderId']}")

    bid, ask = book.best_bid(), book.best_ask()
    print(
        "best bid:", bid and spec.ticks_to_price(bid), "best ask:", ask and spec.ticks_to_price(ask)
    )
    print("ask levels:", [(str(spec.ticks_to_price(p)), n) for p, n in book.levels(Side.SELL)])
    for order in book.orders():
        price, left = spec.ticks_to_price(order.price), spec.lots_to_amount(order.remaining)
        print(f"resting: {order.client_id}/{order.order_id} {order.side} {left} @ {price}")

    # One canonical encoding: a copy restored from it is the same book.
    copy = decode_book(encode_book(book))
    assert copy == book
    print("encoded in", len(encode_book(book)), "bytes")

    # Bad input becomes one clear error; nothing is applied.
    try:
        parse_command(
            {"clientId": "eve", "side": "buy", "price": "1.001", "amount": "1"},
            spec,
            seq=5,
            ts=0,
            default_order_id="e1",
        )
    except ValidationError as exc:
        print("refused:", exc)
    assert book.get_order("carol", "c1") is None  # filled: 2 from alice, 0.5 from bob


if __name__ == "__main__":
    main()
