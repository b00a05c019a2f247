"""What the matcher made of each journal entry: `dex journal`'s "rejected: <reason>".

The journal holds what the sequencer accepted; whether the matcher then rejected it (a
cancel of no resting order, a crossing post-only order, an FOK that cannot fill) is the
outcome of applying it, and applying the journal from seq 1 gives exactly the matcher's
outcomes (the core is deterministic). `Outcomes` applies entries as far as asked and
remembers each rejection: O(n) once for the entries up to the last one shown, then
O(1) per entry that `--follow` prints.
"""

from __future__ import annotations

from exchange.protocol import ReplayError, apply_entry
from exchange.sequencer import Journal
from orderbook_core import DEFAULT_SPEC, MarketSpec, OrderBook, OrderRejected

__all__ = ["Outcomes"]


class Outcomes:
    """A book that follows the journal, and the reason of every rejected entry so far."""

    def __init__(self, spec: MarketSpec = DEFAULT_SPEC) -> None:
        self.book = OrderBook(spec)
        self.seq = 0
        self.rejected: dict[int, str] = {}
        self.broken: str | None = None
        """Why the outcomes stopped (an entry the core refuses, a gap), if they did."""

    def advance(self, journal: Journal, upto: int) -> None:
        """Apply the entries after `seq` up to `upto` (stops for good at a bad entry)."""
        if self.broken is not None or upto <= self.seq:
            return
        try:
            self._advance(journal, upto)
        except ReplayError as exc:  # an entry that is not a command
            self.broken = str(exc)

    def _advance(self, journal: Journal, upto: int) -> None:
        for entry in journal.entries(self.seq):
            if entry.seq > upto:
                return
            if entry.seq != self.seq + 1:
                self.broken = f"gap in the journal: seq {entry.seq} after {self.seq}"
                return
            for event in apply_entry(self.book, entry):
                if isinstance(event, OrderRejected):
                    self.rejected[entry.seq] = str(event.reason)
            self.seq = entry.seq

    def reason(self, seq: int) -> str | None:
        """Why the matcher rejected entry `seq` (None: it did not, or not known)."""
        return self.rejected.get(seq)
