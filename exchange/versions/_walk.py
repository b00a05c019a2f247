"""Walking a page tree level by level, with the checks of its shape: `walk_tree`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exchange.protocol import InvalidVersion
from exchange.versions._parse import (
    BookLeaf,
    BookNode,
    CommandLeaf,
    CommandNode,
    EventLeaf,
    EventNode,
    Page,
)

__all__ = ["walk_tree"]


async def walk_tree(
    load: Callable[[list[str]], Awaitable[dict[str, Page]]],
    top: str | None,
    leaf_type: type[BookLeaf] | type[EventLeaf] | type[CommandLeaf],
    node_type: type[BookNode] | type[EventNode] | type[CommandNode],
    what: str,
    max_pages: int,
) -> list[Page]:
    """Fetch a whole tree level by level; return its leaves in order.

    Checks every page's kind, that a level's pages all have the level's height, and
    that each child holds as many entries as its parent says. O(pages).
    """
    if top is None:
        return []
    level: list[tuple[str, int | None]] = [(top, None)]
    height: int | None = None
    visited = 0
    while True:
        visited += len(level)
        if visited > max_pages:
            raise InvalidVersion(f"{what} tree {top}: more than {max_pages} pages")
        pages = await load([key for key, _ in level])
        children: list[tuple[str, int | None]] = []
        leaves: list[Page] = []
        for key, expected in level:
            page = pages[key]
            if isinstance(page, BookLeaf):
                page_height, count = 0, len(page.orders)
            elif isinstance(page, EventLeaf):
                page_height, count = 0, len(page.events)
            elif isinstance(page, CommandLeaf):
                page_height, count = 0, len(page.entries)
            else:
                page_height, count = page.height, sum(n for _, n in page.children)
            if isinstance(page, leaf_type):
                leaves.append(page)
            elif isinstance(page, node_type):
                children.extend(page.children)
            else:
                raise InvalidVersion(f"{what} tree {top}: page {key} is not a {what} page")
            if height is None:
                height = page_height
            if page_height != height:
                raise InvalidVersion(
                    f"{what} tree {top}: page {key} has height {page_height}, expected {height}"
                )
            if expected is not None and count != expected:
                raise InvalidVersion(
                    f"{what} tree {top}: page {key} holds {count} entries, "
                    f"its parent says {expected}"
                )
        assert height is not None  # set from the first page
        if height == 0:
            return leaves
        level = children
        height -= 1
