"""What a client makes sure of before it submits: the grape listens, the matcher is trusted.

A grape that refuses the connection fails in about a second (`grape_refuses`), not after
``--timeout``. The matcher's key is trusted per exchange instance (`matcher_trust`), and
no order is sent before a head signed by a trusted key has been seen (`trusted_head`):
an order whose outcome the client could not verify is not sent at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.client._args import ClientArgs
from exchange.client._node import ClientNode
from exchange.protocol import SUBMIT_ORDER, AuthFailed, BadMessage, Head, public_key_hex
from exchange.runtime import (
    EXIT_UNREACHABLE,
    EXIT_UNTRUSTED,
    KeyFileError,
    pin_matcher_key,
    pinned_matcher_path,
    read_trusted_key,
)
from transports import ConnectionFailed, Transport, TransportError

__all__ = ["grape_refuses", "matcher_trust", "seconds", "trusted_head"]


def seconds(value: float) -> str:
    """A duration for people: ``2 s``, ``17.5 s``, not ``17.000000000000004 s``."""
    return f"{round(value, 1):g} s"


def matcher_trust(
    args: ClientArgs,
) -> tuple[Ed25519PublicKey | None, Callable[[str | None, Ed25519PublicKey], None] | None]:
    """The matcher key to trust, or how to decide on the key a head names.

    `--matcher-key` if given (then any exchange instance). Else the key is pinned per
    exchange instance (the sequencer's key, which the signed head names): the first key
    seen for an instance is pinned in ``known/matchers/<instance>.pub`` with a one-line
    notice, and only that key is trusted for that instance from then on.
    """
    if args.matcher_key is not None:
        return read_trusted_key(args.matcher_key), None
    noticed: set[str] = set()

    def trust(instance: str | None, key: Ed25519PublicKey) -> None:
        if instance is None:
            raise BadMessage(
                "instance: the matcher does not know its sequencer's key yet"
                " (has the submit_order worker ever started?)"
            )
        path = pinned_matcher_path(instance)
        try:
            pinned, new = pin_matcher_key(instance, key)
        except KeyFileError as exc:
            raise AuthFailed(f"{exc} (delete it to pin the matcher again)") from None
        except OSError as exc:  # cannot pin: trusted for this run all the same
            if instance not in noticed:
                noticed.add(instance)
                print(f"client: cannot pin the matcher key in {path}: {exc}", file=sys.stderr)
            return
        if public_key_hex(pinned) != public_key_hex(key):
            raise AuthFailed(
                f"the matcher of exchange {instance[:12]}.. signs with key"
                f" {public_key_hex(key)[:12]}.., but {public_key_hex(pinned)[:12]}.. is"
                f" pinned for it in {path}; if that exchange's matcher key was really"
                " replaced, delete that file (or pass --matcher-key)"
            )
        if new and instance not in noticed:
            noticed.add(instance)
            print(
                f"client: new exchange {instance[:12]}.. (its sequencer's key): trusting"
                f" its matcher key {public_key_hex(key)[:12]}.., pinned in {path}",
                file=sys.stderr,
            )

    return None, trust


async def trusted_head(
    node: ClientNode, args: ClientArgs, deadline: float, *, submitting: bool
) -> Head | int:
    """The matcher's head once its signature is verified and its key trusted, or the
    exit status when it is not: `EXIT_UNTRUSTED` at once, `EXIT_UNREACHABLE` when no
    usable head came before `deadline`."""
    what = "order not submitted" if submitting else "nothing shown"
    last = "no answer"
    with anyio.move_on_after(max(deadline - anyio.current_time(), 0.01)):
        while True:
            try:
                return await node.fetch_head()
            except AuthFailed as exc:
                print(f"client: {what}: matcher not trusted: {exc.detail}", file=sys.stderr)
                return EXIT_UNTRUSTED
            except (TransportError, BadMessage) as exc:
                last = str(exc)
            await anyio.sleep(0.25)
    print(
        f"client: {what}: the process worker (orderbook_head) gave no trusted head in"
        f" {seconds(args.timeout)} through grape {args.grape} (last: {last})",
        file=sys.stderr,
    )
    return EXIT_UNREACHABLE


_GRAPE_TRIES = (0.2, 0.4)
"""Pauses between the quick retries of a grape that refuses the connection (about 1 s
in all with the attempts): a grape that is not there fails fast, not after --timeout."""


async def grape_refuses(transport: Transport) -> str | None:
    """Why the grape cannot be asked at all (connection refused), or None if it can.

    Only a refused (or broken) connection counts: a grape that answers, even with an
    error, or slowly, is there, and the client goes on.
    """
    link = getattr(transport, "link", None)  # the Grenache adapter's Grape client
    if link is None:
        return None
    last = ""
    for pause in (*_GRAPE_TRIES, None):
        try:
            with anyio.move_on_after(2.0):
                await link.lookup(SUBMIT_ORDER, fresh=True)
            return None
        except ConnectionFailed as exc:
            last = str(exc)
        except TransportError:
            return None
        if pause is not None:
            await anyio.sleep(pause)
    return last
