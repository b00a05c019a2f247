"""The versioned book in the DHT: content-addressed page trees, a publisher, a reader.

A version is a root document (`RootDoc`, one DHT value) naming the root page of the
book's page tree, of the version's event pages and of its command pages. Pages are at
most 999 bytes, shared between versions when unchanged, and verified by their key. The
book's tree is kept incrementally (`BookTree`: O(log n) per changed order) by the
publisher and by any replica that follows versions by applying their commands
(`VersionReader.advance`). Formats: docs/protocol.md, "Versions in the DHT".
"""

from exchange.versions._book_pages import TreeBuilder, book_hash, build_book_tree
from exchange.versions._flusher import DEFAULT_BOOK_INTERVAL, BookFlusher
from exchange.versions._format import MAX_PAGE_BYTES, PageTree
from exchange.versions._list_pages import build_command_pages, build_event_pages
from exchange.versions._list_text import command_text
from exchange.versions._parse import SignedCommands
from exchange.versions._publisher import (
    DEFAULT_REFRESH_BUDGET,
    DEFAULT_RESIDENCY_WINDOW,
    VersionPublisher,
)
from exchange.versions._reader import DEFAULT_MAX_WALK, VersionReader
from exchange.versions._root import (
    ROOT_FORMAT,
    RootDoc,
    decode_root,
    encode_root,
    sign_root,
    verify_root,
)
from exchange.versions._tree import BookTree, OrderId, TreeDelta, touched_orders
from exchange.versions._version import Version

__all__ = [
    "DEFAULT_BOOK_INTERVAL",
    "DEFAULT_MAX_WALK",
    "DEFAULT_REFRESH_BUDGET",
    "DEFAULT_RESIDENCY_WINDOW",
    "MAX_PAGE_BYTES",
    "ROOT_FORMAT",
    "BookFlusher",
    "BookTree",
    "OrderId",
    "PageTree",
    "RootDoc",
    "SignedCommands",
    "TreeBuilder",
    "TreeDelta",
    "Version",
    "VersionPublisher",
    "VersionReader",
    "book_hash",
    "build_book_tree",
    "build_command_pages",
    "build_event_pages",
    "command_text",
    "decode_root",
    "encode_root",
    "sign_root",
    "touched_orders",
    "verify_root",
]
