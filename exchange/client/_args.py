"""Command-line arguments of the client (`bin/client.py`), parsed without I/O.

The challenge's form is `python bin/client.py clientId=client1 type=Buy amount=10
price=100`: `key=value` words, in any order. Keys are matched case-insensitively to
their wire spelling (`clientid=` is `clientId=`). Flags start with `--`. Parsing only
checks the shape of the words; the order itself is validated by the core's wire
validator (`orderbook_core.parse_command`) before anything is sent, so the messages are
the ones the submit_order worker would give.

No order key at all means *watch only*: the client keeps its replica and shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exchange.protocol import DEFAULT_MARKET, ArgumentError
from exchange.runtime import DEFAULT_GRAPE, check_grape_url, is_tcp_port, join_grape_urls
from orderbook_core import ID_RULE, check_market, is_identifier

__all__ = [
    "CANCEL_ALL",
    "DEFAULT_TIMEOUT",
    "USAGE",
    "ClientArgs",
    "parse_client_args",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds `--once` waits for its order's outcome (and startup waits for the grape)."""

USAGE = """\
usage: bin/client [clientId=ID] [type=Buy|Sell | side=buy|sell] [amount=A] [price=P]
                 [ordType=limit|market] [tif=GTC|IOC|FOK] [postOnly=true]
                 [orderId=ID] [op=new|cancel|modify|cancelAll] [requestId=ID]
                 [grape=URL[,URL...]] [--grape=URL ...] [market=SYMBOL | --market=SYMBOL]
                 [--once] [--json | --plain | --live] [--timeout=SECONDS]
                 [--metrics-port=N] [--key-file=PATH] [--matcher-key=HEX|PATH]

  clientId=ID      who you are: 1-64 of [A-Za-z0-9_.-] (required to submit; a watcher
                   without one is named watcher-<pid>)
  type=Buy|Sell    the challenge's spelling of the side (side=buy|sell also works)
  amount=, price=  decimal numbers, on the market's lot and tick
  ordType=market   a market order (no price; never rests)
  tif=             time in force: GTC (default), IOC or FOK
  postOnly=true    refuse the order if it would trade on arrival
  orderId=ID       your id for the order (generated when absent); with op=cancel or
                   op=modify, the order to cancel or change
  op=cancel        cancel your order orderId=ID
  op=modify        change your resting order orderId=ID: price=P and/or amount=A (the
                   new remaining amount)
  requestId=ID     with op=modify: this modify's own id, 1-64 of [A-Za-z0-9_.-]
                   (generated when absent; give the same one only to retry the same
                   modify: a repeat is answered, never applied twice)
  op=cancelAll     cancel every order of yours resting in the book (one signed cancel
                   each, as your verified replica lists them)
  grape=URL        the grape to use (default http://127.0.0.1:30001); several, the
                   local one first: grape=URL1,URL2 (or --grape=URL, repeated): the
                   client goes on through another when one stops answering
  market=SYMBOL    the market to trade and show (default BTC-USD, the seed's names;
                   --market=SYMBOL works too): 1-20 of A-Z, 0-9 and '-'
  --once           exit 0 once the order's outcome is in this client's replica
  --json           one JSON object per line instead of text
  --plain          text lines even on a terminal (the live view is for terminals)
  --live           the live view of the market even when the output is not a
                   terminal (needs the tui extra, rich)
  --timeout=S      how long --once and startup may take (default 30)
  --metrics-port=N serve Prometheus metrics (the replica's seq, head and lag) on
                   http://127.0.0.1:N/metrics (needs the metrics extra)
  --key-file=PATH  the Ed25519 key your orders are signed with, made on first use
                   (default: <clientId>.key in $DEX_KEY_DIR, else ~/.config/dex/keys)
  --matcher-key=K  the matcher's public key (64 hex, or its matcher.pub): heads and
                   versions signed by another key are refused (default: the key
                   pinned for the exchange instance the matcher names, in
                   known/matchers/ of the key directory; a new instance is pinned on
                   first use, with a notice)

No order arguments: watch the book only. On a terminal the client shows the market
live (the book, the trades, your orders); otherwise one line per event.
Exit status:
  0    done
  1    refused by the exchange (the sequencer's ERR_*: nothing was stored)
  2    bad arguments or a bad order
  3    unreachable: the grape refused the connection (about 1 s), or the workers did
       not answer; the order was not taken
  4    rejected by the matcher (a cancel of no resting order of yours, a post-only
       order that would cross, an unfillable FOK)
  5    not confirmed in time: the order may have been taken and may still execute;
       check it with `dex order <clientId> <orderId>`; resending the same command with
       the same orderId (a modify: with the same requestId) is safe (a repeat is
       answered, never queued twice)
  6    the matcher is not trusted (another key is pinned for its exchange instance, or
       a bad signature): nothing was submitted
  130  interrupted; 141 output pipe closed"""

_KEYS = (
    "clientId",
    "type",
    "side",
    "amount",
    "price",
    "ordType",
    "tif",
    "orderId",
    "grape",
    "op",
    "postOnly",
    "requestId",
    "market",
)
_BY_LOWER = {key.lower(): key for key in _KEYS}

CANCEL_ALL = "cancelAll"
"""The client's own ``op``, not the wire's: a signed cancel of each of the client's
resting orders (as its verified replica holds them), sent one by one."""
_OPS = {"new": "new", "cancel": "cancel", "modify": "modify", CANCEL_ALL.lower(): CANCEL_ALL}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class ClientArgs:
    """What the client was asked to do.

    `order` is the `submit_order` payload (strings as typed, the side normalized to
    "buy"/"sell"; `orderId` may be absent), or None to watch only.
    """

    client_id: str
    grape: str = DEFAULT_GRAPE
    """The grape's URL, or several, comma-separated (the preferred first)."""
    order: dict[str, Any] | None = None
    once: bool = False
    json: bool = False
    plain: bool = False
    live: bool = False
    """`--live`: the live market view whatever the output is (a terminal or not)."""
    timeout: float = DEFAULT_TIMEOUT
    metrics_port: int | None = None
    key_file: str | None = None
    """The client's key file (`--key-file`); None: the default place for its clientId."""
    matcher_key: str | None = None
    """The matcher key to trust (`--matcher-key`: 64 hex or a .pub file); None: the one
    recorded in the key directory, else the first that signs a head (then recorded)."""
    market: str = DEFAULT_MARKET
    """The market (`market=` or `--market`): its names, and what its orders are signed for."""
    help: bool = False

    @property
    def grapes(self) -> list[str]:
        """The grapes' URLs, the preferred first (`grape` split at its commas)."""
        return self.grape.split(",")


_VALUE_FLAGS = frozenset({"timeout", "key-file", "matcher-key", "metrics-port", "grape", "market"})
"""Flags that take a value, given as ``--flag=value`` or as the next word."""


def parse_client_args(argv: list[str], *, default_client_id: str = "watcher") -> ClientArgs:
    """Parse the client's words into `ClientArgs`.

    Args:
        argv: the words after the script name.
        default_client_id: the id a watch-only client uses when none is given.

    Returns:
        The parsed arguments; `help=True` (and nothing else checked) for `-h`/`--help`.

    Raises:
        ArgumentError: an unknown, repeated or malformed word, or an order without a
            clientId, or a cancel or modify without an orderId.
    """
    if "-h" in argv or "--help" in argv:
        return ClientArgs(client_id=default_client_id, help=True)
    values: dict[str, str] = {}
    once = as_json = plain = live = False
    timeout = DEFAULT_TIMEOUT
    metrics_port: int | None = None
    key_file: str | None = None
    matcher_key: str | None = None
    grape_flags: list[list[str]] = []
    market_flags: list[str] = []
    words = iter(argv)
    for word in words:
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name in _VALUE_FLAGS and not eq:
                value = next(words, "")  # "--flag value" as well as "--flag=value"
            if name == "once" and not eq:
                once = True
            elif name == "json" and not eq:
                as_json = True
            elif name == "plain" and not eq:
                plain = True
            elif name == "live" and not eq:
                live = True
            elif name == "timeout":
                timeout = _parse_timeout(value)
            elif name == "key-file":
                if not value:
                    raise ArgumentError("--key-file: expected a path")
                key_file = value
            elif name == "matcher-key":
                if not value:
                    raise ArgumentError("--matcher-key: expected 64 hex or a .pub file")
                matcher_key = value
            elif name == "metrics-port":
                metrics_port = _parse_port(value)
            elif name == "grape":
                grape_flags.append(_parse_grape(value, "--grape"))
            elif name == "market":
                market_flags.append(_parse_market(value, "--market"))
            else:
                raise ArgumentError(
                    f"unknown flag {word!r} (flags: --once, --json, --plain, --live, --timeout=S,"
                    " --metrics-port=N, --key-file=PATH, --grape=URL,"
                    " --matcher-key=HEX|PATH, --market=SYMBOL)"
                )
            continue
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise ArgumentError(f"expected key=value, got {word!r}")
        canonical = _BY_LOWER.get(key.lower())
        if canonical is None:
            raise ArgumentError(f"unknown key {key!r} (keys: {', '.join(_KEYS)})")
        if canonical in values:
            raise ArgumentError(f"{canonical} given twice")
        if not value:
            raise ArgumentError(f"{canonical}: empty value")
        values[canonical] = value

    if live and (as_json or plain):
        raise ArgumentError(f"--live and --{'json' if as_json else 'plain'}: choose one")
    given = [_parse_grape(values.pop("grape"), "grape")] if "grape" in values else []
    grape = ",".join(join_grape_urls(given + grape_flags) or [DEFAULT_GRAPE])
    markets = market_flags
    if "market" in values:
        markets = [*markets, _parse_market(values.pop("market"), "market")]
    if len(set(markets)) > 1:
        raise ArgumentError(f"market: given as {' and '.join(markets)}; one market per client")
    client_id = values.pop("clientId", None)
    if client_id is not None and not is_identifier(client_id):
        raise ArgumentError(f"clientId: must be {ID_RULE}, got {client_id!r}")
    order = _build_order(values, client_id) if values else None
    return ClientArgs(
        client_id=client_id or default_client_id,
        grape=grape,
        order=order,
        once=once,
        json=as_json,
        plain=plain,
        live=live,
        timeout=timeout,
        metrics_port=metrics_port,
        key_file=key_file,
        matcher_key=matcher_key,
        market=markets[0] if markets else DEFAULT_MARKET,
    )


def _build_order(values: dict[str, str], client_id: str | None) -> dict[str, Any]:
    if client_id is None:
        raise ArgumentError("clientId: required to submit an order (e.g. clientId=client1)")
    op = _OPS.get(values.pop("op", "new").lower())
    if op is None:
        raise ArgumentError("op: must be new, cancel, modify or cancelAll")
    order: dict[str, Any] = {"clientId": client_id}
    if op == CANCEL_ALL:
        if values:
            raise ArgumentError(f"op=cancelAll takes no other key, not {', '.join(sorted(values))}")
        order.update(op=CANCEL_ALL)
        return order
    if op == "modify":
        extra = sorted(set(values) - {"orderId", "price", "amount", "requestId"})
        if extra:
            raise ArgumentError(
                f"op=modify takes orderId, price, amount and requestId only, not {', '.join(extra)}"
            )
        if "orderId" not in values:
            raise ArgumentError("orderId: required with op=modify")
        if "price" not in values and "amount" not in values:
            raise ArgumentError("op=modify: give a new price=, amount= (remaining), or both")
        order.update(op="modify", **values)
        return order
    if "requestId" in values:
        raise ArgumentError("requestId: only op=modify takes one (an order's id is its orderId)")
    if op == "cancel":
        extra = sorted(set(values) - {"orderId"})
        if extra:
            raise ArgumentError(f"op=cancel takes only orderId, not {', '.join(extra)}")
        if "orderId" not in values:
            raise ArgumentError("orderId: required with op=cancel")
        order.update(op="cancel", orderId=values["orderId"])
        return order
    side = _parse_side(values.pop("type", None), values.pop("side", None))
    order["side"] = side
    if "postOnly" in values:
        order["postOnly"] = _parse_bool("postOnly", values.pop("postOnly"))
    if "tif" in values:
        values["tif"] = values["tif"].upper()
    if "ordType" in values:
        values["ordType"] = values["ordType"].lower()
    order.update(values)
    if "amount" not in order:
        raise ArgumentError("amount: required to submit an order")
    return order


def _parse_side(type_: str | None, side: str | None) -> str:
    given = [v.lower() for v in (type_, side) if v is not None]
    if not given:
        raise ArgumentError("type: required to submit an order (type=Buy or type=Sell)")
    for value in given:
        if value not in ("buy", "sell"):
            raise ArgumentError(f"type: must be Buy or Sell, got {value!r}")
    if len(set(given)) > 1:
        raise ArgumentError(f"type={type_} and side={side} disagree")
    return given[0]


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ArgumentError(f"{key}: must be true or false, got {value!r}")


def _parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ArgumentError(f"--timeout: not a number of seconds: {value!r}") from None
    if not 0 < seconds <= 3600:
        raise ArgumentError(f"--timeout: must be in (0, 3600] seconds, got {value!r}")
    return seconds


def _parse_port(value: str) -> int:
    if not is_tcp_port(value):
        raise ArgumentError(f"--metrics-port: expected a TCP port (0-65535), got {value!r}")
    return int(value)


def _parse_market(value: str, what: str) -> str:
    try:
        return check_market(value)
    except ValueError as exc:
        raise ArgumentError(f"{what}: {exc}") from None


def _parse_grape(value: str, what: str) -> list[str]:
    """``URL`` or ``URL1,URL2``, each URL checked."""
    urls = []
    for part in value.split(","):
        try:
            urls.append(check_grape_url(part))
        except ValueError as exc:
            raise ArgumentError(f"{what}: {exc}, got {part!r}") from None
    return urls
