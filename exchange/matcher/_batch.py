"""Decode a ``process_order`` batch without the validator's work where it is known.

The sequencer journals every command in one exact form (`orderbook_core.command_to_wire`
of what its validator accepted), so most commands the matcher receives are a limit
order or a cancel in that form, with prices and amounts it has seen before. The
matcher decodes those as a replica decodes the commands of a signed version
(`exchange.versions.SignedCommands`, here with ``check_ids``): straight from their
fields, both ids held to the id rule, the price and amount strings looked up among
those the validator already turned into ticks and lots (a string's ticks depend only
on the string and the market), side and time in force by their exact names. That is
the validator's outcome exactly; anything else (another form, a string not seen yet,
an id that breaks the rule) goes through the validator. Running the validator (its
Decimal arithmetic) on every command was the matcher's largest cost per command after
the version's puts (profile at 1,000 orders/s offered).

The request's shape is checked as `ProcessBatch.from_wire` checks it; anything off
the plain path (a field too many, a seq out of range, seqs not consecutive) is handed
to `ProcessBatch.from_wire` itself, so the error is its error.
"""

from __future__ import annotations

from exchange.protocol import MAX_BATCH, MAX_SEQ, Entry, ProcessBatch
from exchange.versions import SignedCommands
from orderbook_core import MarketSpec
from transports import JSON

__all__ = ["BatchDecoder"]

_ENTRY_FIELDS = frozenset({"seq", "ts", "command"})


class BatchDecoder:
    """Decodes the sequencer's signed ``process_order`` payloads of one market."""

    __slots__ = ("_signed", "_spec")

    def __init__(self, spec: MarketSpec) -> None:
        self._spec = spec
        self._signed = SignedCommands(check_ids=True)

    def decode(self, payload: JSON) -> ProcessBatch:
        """The batch of `payload` (its ``sig`` already checked and removed).

        Raises:
            BadMessage, orderbook_core.ValidationError: as `ProcessBatch.from_wire`.
        """
        if isinstance(payload, dict) and "entries" in payload:
            items = payload["entries"]
            if len(payload) != 1 or not isinstance(items, list):
                return ProcessBatch.from_wire(payload, self._spec)
        else:
            items = [payload]
        if not 1 <= len(items) <= MAX_BATCH:
            return ProcessBatch.from_wire(payload, self._spec)
        entries: list[Entry] = []
        signed, spec = self._signed, self._spec
        previous = None
        for item in items:
            if not (isinstance(item, dict) and item.keys() == _ENTRY_FIELDS):
                return ProcessBatch.from_wire(payload, spec)
            seq, ts, command = item["seq"], item["ts"], item["command"]
            if not (
                type(seq) is int
                and type(ts) is int
                and 1 <= seq <= MAX_SEQ
                and 0 <= ts <= MAX_SEQ
                and isinstance(command, dict)
                and (previous is None or seq == previous + 1)
            ):
                return ProcessBatch.from_wire(payload, spec)
            previous = seq
            entries.append(signed.entry(seq, ts, command, spec))
        return ProcessBatch(tuple(entries))
