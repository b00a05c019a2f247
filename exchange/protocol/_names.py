"""The names of the exchange's four services on the Grenache network.

These are the only string literals of the names in the code: every service serves and
every caller calls through these constants.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ORDERBOOK_HEAD", "ORDERBOOK_UPDATED", "PROCESS_ORDER", "SUBMIT_ORDER"]

SUBMIT_ORDER: Final = "submit_order"
"""Served by the sequencer (submit_order worker): clients submit commands here."""

PROCESS_ORDER: Final = "process_order"
"""Served by the matcher (process_order worker): the sequencer forwards the journal here."""

ORDERBOOK_HEAD: Final = "orderbook_head"
"""Served by the matcher: the latest published version, ``{"seq", "root"}``."""

ORDERBOOK_UPDATED: Final = "orderbook_updated"
"""Served by every client: the matcher pushes each new version's root hash here."""
