"""The client's command line: the challenge's form, the extensions, and clear errors."""

from __future__ import annotations

import pytest

from exchange.client import ClientArgs, parse_client_args
from exchange.protocol import ArgumentError
from exchange.runtime import DEFAULT_GRAPE


def test_challenge_form() -> None:
    args = parse_client_args(["clientId=client1", "type=Buy", "amount=10", "price=100"])
    assert args == ClientArgs(
        client_id="client1",
        grape=DEFAULT_GRAPE,
        order={"clientId": "client1", "side": "buy", "amount": "10", "price": "100"},
    )


def test_extensions_and_flags() -> None:
    args = parse_client_args(
        [
            "clientId=c2",
            "side=SELL",
            "amount=0.5",
            "price=101.25",
            "tif=ioc",
            "orderId=c2-1",
            "postOnly=true",
            "grape=http://127.0.0.1:40001",
            "--once",
            "--json",
            "--timeout=12.5",
        ]
    )
    assert args.order == {
        "clientId": "c2",
        "side": "sell",
        "amount": "0.5",
        "price": "101.25",
        "tif": "IOC",
        "orderId": "c2-1",
        "postOnly": True,
    }
    assert (args.grape, args.once, args.json, args.timeout) == (
        "http://127.0.0.1:40001",
        True,
        True,
        12.5,
    )


def test_keys_are_case_insensitive_and_timeout_takes_a_separate_word() -> None:
    args = parse_client_args(["CLIENTID=c1", "Type=sell", "AMOUNT=1", "price=2", "--timeout", "3"])
    assert args.order == {"clientId": "c1", "side": "sell", "amount": "1", "price": "2"}
    assert args.timeout == 3


def test_cancel() -> None:
    args = parse_client_args(["clientId=c1", "op=cancel", "orderId=c1-7"])
    assert args.order == {"clientId": "c1", "op": "cancel", "orderId": "c1-7"}


def test_watch_only() -> None:
    args = parse_client_args(["grape=http://localhost:30002"], default_client_id="watcher-9")
    assert args.order is None
    assert args.client_id == "watcher-9"
    assert args.grape == "http://localhost:30002"
    named = parse_client_args(["clientId=eve"])
    assert named.order is None
    assert named.client_id == "eve"


def test_several_grapes() -> None:
    a, b, c = (f"http://127.0.0.1:{port}" for port in (30001, 40001, 50001))
    args = parse_client_args([f"grape={a},{b}", "--grape", c, f"--grape={a}"])
    assert args.grape == f"{a},{b},{c}"  # in order, each once
    assert args.grapes == [a, b, c]
    assert parse_client_args([f"--grape={b}"]).grapes == [b]
    assert parse_client_args([]).grapes == [DEFAULT_GRAPE]
    with pytest.raises(ArgumentError, match="grape: expected a URL"):
        parse_client_args([f"grape={a},,{b}"])
    with pytest.raises(ArgumentError, match="--grape: the URL takes no path"):
        parse_client_args([f"--grape={a}/x"])


def test_help() -> None:
    assert parse_client_args(["--help"]).help
    assert parse_client_args(["clientId=x", "-h"]).help


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["clientId=c1", "type=Buy", "amount=1", "price"], "expected key=value, got 'price'"),
        (["=1"], "expected key=value"),
        (["clientId=c1", "colour=red"], "unknown key 'colour'"),
        (["clientId=c1", "clientId=c2"], "clientId given twice"),
        (["clientId=c1", "type=Buy", "amount="], "amount: empty value"),
        (["clientId=bad id!", "type=Buy", "amount=1"], "clientId: must be 1-64"),
        (["clientId=" + "x" * 65], "clientId: must be 1-64"),
        (["type=Buy", "amount=1", "price=1"], "clientId: required to submit"),
        (["clientId=c1", "amount=1", "price=1"], "type: required"),
        (["clientId=c1", "type=Hold", "amount=1"], "type: must be Buy or Sell"),
        (["clientId=c1", "type=Buy", "side=sell", "amount=1"], "disagree"),
        (["clientId=c1", "type=Buy", "price=1"], "amount: required"),
        (["clientId=c1", "op=cancel"], "orderId: required with op=cancel"),
        (["clientId=c1", "op=cancel", "orderId=x", "price=1"], "op=cancel takes only orderId"),
        (["clientId=c1", "op=modify", "orderId=x"], "op=modify: give a new price="),
        (["clientId=c1", "op=modify", "price=1"], "orderId: required with op=modify"),
        (["clientId=c1", "op=modify", "orderId=x", "type=Buy"], "op=modify takes orderId"),
        (["clientId=c1", "op=cancelAll", "orderId=x"], "op=cancelAll takes no other"),
        (["clientId=c1", "op=replace"], "op: must be new, cancel, modify or cancelAll"),
        (["op=cancelAll"], "clientId: required"),
        (["clientId=c1", "type=Buy", "amount=1", "postOnly=maybe"], "postOnly: must be true"),
        (["grape=127.0.0.1:30001"], "grape: expected a URL"),
        (["grape=http://127.0.0.1"], "grape: expected a URL"),
        (["grape=http://127.0.0.1:99999"], "grape: expected a URL"),
        (["grape=http://127.0.0.1:30001/x"], "grape: the URL takes no path"),
        (["--forever"], "unknown flag '--forever'"),
        (["--once=yes"], "unknown flag"),
        (["--timeout=soon"], "--timeout: not a number"),
        (["--timeout=0"], "--timeout: must be in"),
        (["--timeout"], "--timeout: not a number"),
    ],
)
def test_errors_are_clear(argv: list[str], message: str) -> None:
    with pytest.raises(ArgumentError) as info:
        parse_client_args(argv)
    assert message in str(info.value)


def test_key_file_flag() -> None:
    words = ["clientId=c1", "type=Buy", "amount=1", "price=1"]
    assert parse_client_args(words).key_file is None  # the default place for c1
    assert parse_client_args([*words, "--key-file=/k/c1.key"]).key_file == "/k/c1.key"
    assert parse_client_args([*words, "--key-file", "k.key"]).key_file == "k.key"
    with pytest.raises(ArgumentError, match="--key-file: expected a path"):
        parse_client_args([*words, "--key-file="])


def test_modify_and_cancel_all_are_commands() -> None:
    """Issue 16: the CLI refused op=modify, and had no cancel-all."""
    args = parse_client_args(["clientId=c1", "op=modify", "orderId=o1", "price=101.5"])
    assert args.order == {"clientId": "c1", "op": "modify", "orderId": "o1", "price": "101.5"}
    args = parse_client_args(["clientId=c1", "OP=Modify", "orderId=o1", "amount=2"])
    assert args.order == {"clientId": "c1", "op": "modify", "orderId": "o1", "amount": "2"}
    args = parse_client_args(["clientId=c1", "op=cancelall"])
    assert args.order == {"clientId": "c1", "op": "cancelAll"}


def test_a_modify_takes_its_request_id() -> None:
    """Issue 21: a modify names itself (a retry with the same requestId is safe)."""
    args = parse_client_args(["clientId=c1", "op=modify", "orderId=o1", "price=1", "requestId=r1"])
    assert args.order == {
        "clientId": "c1", "op": "modify", "orderId": "o1", "price": "1", "requestId": "r1"
    }  # fmt: skip
    for words in (["type=Buy", "amount=1", "price=1"], ["op=cancel", "orderId=o1"]):
        with pytest.raises(ArgumentError, match="requestId: only op=modify takes one"):
            parse_client_args(["clientId=c1", *words, "requestId=r1"])


def test_the_market_in_the_seeds_style_or_as_a_flag() -> None:
    assert parse_client_args(["clientId=c1"]).market == "BTC-USD"
    order = ["clientId=c1", "type=Buy", "amount=1", "price=100"]
    args = parse_client_args([*order, "market=ETH-USD"])
    assert args.market == "ETH-USD"
    assert args.order == {"clientId": "c1", "side": "buy", "amount": "1", "price": "100"}
    assert parse_client_args(["--market", "ETH-USD"]).market == "ETH-USD"
    assert parse_client_args(["--market=SOL-USD", "market=SOL-USD"]).market == "SOL-USD"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["market=eth-usd"], "market: market 'eth-usd'"),
        (["--market", "BTC:USD"], "--market: market 'BTC:USD'"),
        (["market=ETH-USD", "--market=SOL-USD"], "one market per client"),
    ],
)
def test_a_bad_market_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        parse_client_args(argv)
