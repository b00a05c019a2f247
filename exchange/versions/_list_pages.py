"""A version's event and command lists as page trees: compressed leaves, packed greedily.

The events and commands of a version are not shared between versions, so their pages
are packed greedily (no content-defined boundaries) and compressed (zlib, base64 in the
page: 4 to 5 times fewer pages). The interior levels are chunked like the book's
(``_format.build_levels``).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence

from exchange.protocol import Entry
from exchange.versions._format import (
    COMMAND_NODE,
    COMMAND_ZLEAF,
    EVENT_NODE,
    EVENT_ZLEAF,
    MAX_PAGE_BYTES,
    PAGE_VERSION,
    PageTree,
    build_levels,
)
from exchange.versions._list_text import ListText, list_text
from orderbook_core import Event, MarketSpec
from transports import dht_key

__all__ = ["build_command_pages", "build_event_pages"]

_ZLIB_LEVEL = 6
_Z_FULL_ENOUGH = 0.92
"""A leaf whose compressed text fills this share of the budget is not grown further."""
_Z_BUDGET = (MAX_PAGE_BYTES - len('{"t":"EZ","v":3,"z":""}')) // 4 * 3
"""Compressed bytes whose base64 text fits in a page beside the page's other fields."""


def _build_list(encodings: Sequence[str], zleaf: str, node: str) -> PageTree:
    """Build a list's tree (events, commands): compressed leaves, no boundaries.

    Each leaf holds the longest run of items (from where the previous leaf ended) whose
    compressed JSON array fits, as found by `_fitting_run`. A version's lists are never
    shared with another version, so nothing is lost by packing; compression makes 4 to
    5 times fewer pages than plain JSON (events and commands repeat their keys and
    ids), and pages are what a grape spends its CPU on. O(n) compressions of a page's
    worth of text, a few per page.
    """
    if not encodings:
        return PageTree(None, {}, 0)
    pages: dict[str, str] = {}
    level: list[tuple[str, int]] = []
    start, guess = 0, 16
    while start < len(encodings):
        count, data = _fitting_run(encodings, start, guess)
        page = f'{{"t":"{zleaf}","v":{PAGE_VERSION},"z":"{base64.b64encode(data).decode()}"}}'
        key = dht_key(page)
        pages[key] = page
        level.append((key, count))
        start, guess = start + count, count
    return build_levels(pages, level, node)


def _deflate(items: Sequence[str]) -> bytes:
    return zlib.compress(("[" + ",".join(items) + "]").encode("ascii"), _ZLIB_LEVEL)


def _fitting_run(encodings: Sequence[str], start: int, guess: int) -> tuple[int, bytes]:
    """How many items from `start` make one compressed leaf, and its compressed text.

    Starts from `guess` (the previous leaf's count: lists are alike along a version)
    and moves the count in proportion to how far the compressed size is from the
    budget, within the bounds found so far: one or two compressions a page, most
    often. A leaf filled to `_Z_FULL_ENOUGH` of the budget is taken; the search is
    deterministic, so the same list gives the same pages.

    Raises:
        ValueError: one item alone does not fit (ids far beyond the id rule).
    """
    left = len(encodings) - start
    fits, fit_data = 0, b""
    too_many = left + 1
    n = max(1, min(guess, left))
    while True:
        data = _deflate(encodings[start : start + n])
        if len(data) <= _Z_BUDGET:
            fits, fit_data = n, data
            if n == left or len(data) >= _Z_FULL_ENOUGH * _Z_BUDGET:
                break
        else:
            too_many = n
        if too_many - fits <= 1:
            break
        scaled = int(n * _Z_BUDGET * (_Z_FULL_ENOUGH + 1) / 2 / len(data))
        n = min(max(scaled, fits + 1), too_many - 1)
    if fits == 0:
        raise ValueError(f"a list item of {len(encodings[start])} bytes does not fit in a page")
    return fits, fit_data


_TEXTS: dict[MarketSpec, ListText] = {}
"""One `ListText` per market (its memos of price and amount strings)."""


def build_event_pages(events: Sequence[Event], spec: MarketSpec) -> PageTree:
    """The page tree of a version's events, in order, encoded with `event_to_wire`.

    Leaves are packed greedily (a version's events are never shared with another
    version, so content-defined boundaries would only add pages). O(len(events)).

    Raises:
        ValueError: one event's encoding cannot fit in a page (it cannot happen with ids
            of at most 64 characters).
    """
    text = _TEXTS.get(spec)
    if text is None:
        if len(_TEXTS) >= 16:
            _TEXTS.clear()
        text = _TEXTS[spec] = ListText(spec)
    encodings = [text.event(event) for event in events]
    return _build_list(encodings, EVENT_ZLEAF, EVENT_NODE)


def build_command_pages(entries: Sequence[Entry]) -> PageTree:
    """The page tree of a version's commands, in seq order: ``[seq, ts, command]`` each.

    The matcher's input, exactly (journal entries, their commands' wire forms as
    journaled); a replica applies them to its own book (`exchange.protocol.apply_entry`,
    as the matcher did) and gets the matcher's events and book, since the core is
    deterministic. Packed greedily like the events. O(len(entries)).

    Raises:
        ValueError: one command's encoding cannot fit in a page (the sequencer's
            validator bounds every field, so it cannot happen with its commands).
    """
    encodings = [list_text(e.seq, e.ts, e.wire) for e in entries]
    return _build_list(encodings, COMMAND_ZLEAF, COMMAND_NODE)
