"""What every command line of the exchange shares: exit codes, defaults, JSON output.

The workers' (`bin/submitOrderWorker.py`, `bin/processOrderWorker.py`), the client's
(`bin/client.py`) and the operator's (`dex`) command lines all take their exit codes and
default grape URLs from here, so a status means the same thing whichever program
returned it. It imports nothing of the exchange: every CLI may import it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_GRAPE",
    "DEFAULT_MATCHER_GRAPE",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CONFIRMED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_UNTRUSTED",
    "EXIT_USAGE",
    "check_grape_url",
    "check_grape_urls",
    "grape_url",
    "grape_urls",
    "is_tcp_port",
    "join_grape_urls",
    "positive",
    "print_json",
    "tcp_port",
]

DEFAULT_GRAPE = "http://127.0.0.1:30001"
"""The first grape of the run book (``grape --aph 30001``): the client, the sequencer and
`dex` use it unless told otherwise."""
DEFAULT_MATCHER_GRAPE = "http://127.0.0.1:40001"
"""The second grape of the run book (``grape --aph 40001``): the matcher's default, so
the two workers reach the DHT through different grapes."""

EXIT_OK = 0
EXIT_FAILED = 1
"""A check failed, nothing was found, or the exchange refused the request (the
sequencer's ``ERR_*``: nothing was stored)."""
EXIT_USAGE = 2
"""Bad arguments, a bad order, an unreadable journal or key file."""
EXIT_UNREACHABLE = 3
"""The grape or the services could not be reached (a client's order was not sent, or
surely not received)."""
EXIT_REJECTED = 4
"""The matcher rejected the command (a cancel of no resting order, a crossing post-only)."""
EXIT_NOT_CONFIRMED = 5
"""A client's order may have been taken but its outcome was not seen in time: it may
still execute; check it (``dex order <clientId> <orderId>``) before sending another, or
resend the same command with the same orderId (a repeat is answered, not queued)."""
EXIT_UNTRUSTED = 6
"""A client cannot trust the matcher (its key is not the one pinned for that exchange
instance, or a signature is bad): nothing was submitted."""
EXIT_INTERRUPTED = 130
"""128 + SIGINT: interrupted (Ctrl-C)."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports when the output pipe closed."""


def print_json(value: Any) -> None:
    """One compact JSON document on stdout, flushed (one line a record for pipes)."""
    print(json.dumps(value, separators=(",", ":")), flush=True)


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, refused unless > 0."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def is_tcp_port(text: str) -> bool:
    """The one rule for a port on a command line: digits, 0-65535."""
    return text.isdigit() and int(text) <= 65535


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port number, 0-65535 (`is_tcp_port`)."""
    if not is_tcp_port(text):
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return int(text)


def check_grape_url(text: str) -> str:
    """The one rule for a grape's URL, ``http://host:port`` (no path, no query), which
    every command line applies before it reaches the network.

    Returns:
        ``http://host:port``, without a trailing slash.

    Raises:
        ValueError: not such a URL; the message says what is wrong.
    """
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"expected a URL like {DEFAULT_GRAPE}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the URL takes no path or query")
    return f"http://{parts.netloc}"


def check_grape_urls(text: str) -> list[str]:
    """Several grapes in one word, ``URL1,URL2`` (or just one URL), each checked by
    `check_grape_url`, in the order given.

    Raises:
        ValueError: a URL is malformed or empty (the message names it).
    """
    urls = []
    for part in text.split(","):
        try:
            urls.append(check_grape_url(part.strip()))
        except ValueError as exc:
            raise ValueError(f"{exc}: {part.strip()!r}") from None
    return urls


def join_grape_urls(groups: list[list[str]]) -> list[str]:
    """The grapes of every ``--grape`` / ``grape=`` given, in order, each once."""
    return list(dict.fromkeys(url for group in groups for url in group))


def grape_urls(text: str) -> list[str]:
    """An argparse type: `check_grape_urls` (one URL or ``URL1,URL2``; a malformed one
    is a usage error, exit 2)."""
    try:
        return check_grape_urls(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a grape URL ({exc})") from None


def grape_url(text: str) -> str:
    """An argparse type: `check_grape_url` (a malformed URL is a usage error, exit 2, not
    an unreachable grape)."""
    try:
        return check_grape_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a grape URL ({exc}): {text!r}") from None
