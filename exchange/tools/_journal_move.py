"""Moving a journal between backends: `dex journal export` and `dex journal import`.

The way from one SQLite file to a JetStream stream (or back, or to a new disk) is a
file of JSON lines that either backend reads and writes, so the move is two commands
with a file one can keep, check and copy in between:

```
{"format": "dex-journal/1", "market": ..., "head": N, "acked": A}   the header
{"seq": 1, "ts": ..., "command": {...}, "key": "<hex>"}              an entry that bound a key
{"seq": 2, "ts": ..., "command": {...}, "requestId": "r-1"}          a modify with its requestId
...
{"end": N, "sha256": "<hex>"}                                        the trailer
```
Each entry keeps what the sequencer needs to go on exactly as before: its seq and ts,
the public key it bound (its client's first accepted command), and a modify's requestId,
so a client retrying after the move still gets the first answer. The trailer's hash
covers every entry line, so a truncated or edited file is refused before anything is
written.

An import appends in the target's batch size under the target's writer lock. It is
safe to run again: a target that already holds a prefix of the file (an import that was
interrupted) is checked entry by entry against it and only the rest is appended; a
target that holds anything else is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TextIO

from exchange.protocol import BadMessage, Entry, ReplayError, entry_from_wire, entry_to_wire
from exchange.sequencer import JournalBackend
from orderbook_core import MarketSpec, ValidationError, canonical_json

__all__ = ["EXPORT_FORMAT", "Imported", "export_journal", "import_journal"]

EXPORT_FORMAT = "dex-journal/1"


class Imported(NamedTuple):
    """What an import did: entries appended now, and entries the target already held."""

    appended: int
    present: int


def export_journal(journal: JournalBackend, out: TextIO) -> int:
    """Write `journal` to `out` as the export format; return the number of entries."""
    keys = journal.client_keys()
    requests = journal.modify_requests()
    head = journal.head()
    out.write(
        canonical_json(
            {
                "format": EXPORT_FORMAT,
                "market": journal.spec.market,
                "head": head,
                "acked": min(journal.acked(), head),
            }
        )
        + "\n"
    )
    digest = hashlib.sha256()
    bound: set[str] = set()
    count = 0
    for entry in journal.entries():
        if entry.seq > head:
            break
        record = entry_to_wire(entry)
        client_id = entry.wire["clientId"]
        if client_id in keys and client_id not in bound:
            bound.add(client_id)
            record["key"] = keys[client_id]
        if entry.seq in requests:
            record["requestId"] = requests[entry.seq]
        line = canonical_json(record)
        digest.update(line.encode() + b"\n")
        out.write(line + "\n")
        count += 1
    out.write(canonical_json({"end": count, "sha256": digest.hexdigest()}) + "\n")
    return count


class _Parsed(NamedTuple):
    entry: Entry
    key: str | None
    request_id: str | None


def _read_export(lines: Iterable[str], spec: MarketSpec) -> tuple[dict[str, Any], list[_Parsed]]:
    """The header and the entries of an export, checked whole (format, market, the
    numbering, the trailer's count and hash) before anything is written."""
    it = iter(lines)
    try:
        header = json.loads(next(it))
    except (StopIteration, ValueError):
        raise ReplayError("not a journal export: no header line") from None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ReplayError(f"not a journal export (expected format {EXPORT_FORMAT!r})")
    if header.get("market") != spec.market:
        raise ReplayError(f"the export is of market {header.get('market')!r}, not {spec.market!r}")
    digest = hashlib.sha256()
    parsed: list[_Parsed] = []
    trailer: dict[str, Any] | None = None
    for number, line in enumerate(it, 2):
        if trailer is not None:
            raise ReplayError(f"line {number}: data after the trailer")
        try:
            record = json.loads(line)
        except ValueError:
            raise ReplayError(f"line {number}: not JSON") from None
        if isinstance(record, dict) and "end" in record:
            trailer = record
            continue
        digest.update(line.rstrip("\n").encode() + b"\n")
        if not isinstance(record, dict):
            raise ReplayError(f"line {number}: not an entry")
        key, request_id = record.pop("key", None), record.pop("requestId", None)
        if not (key is None or isinstance(key, str)) or not (
            request_id is None or isinstance(request_id, str)
        ):
            raise ReplayError(f"line {number}: key and requestId must be strings")
        try:
            entry = entry_from_wire(record, spec)
        except (BadMessage, ValidationError) as exc:
            raise ReplayError(f"line {number}: not an entry: {exc}") from None
        if entry.seq != len(parsed) + 1:
            raise ReplayError(f"line {number}: seq {entry.seq}, expected {len(parsed) + 1}")
        parsed.append(_Parsed(entry, key, request_id))
    if trailer is None:
        raise ReplayError("the export is truncated: no trailer")
    if trailer.get("end") != len(parsed) or trailer.get("sha256") != digest.hexdigest():
        raise ReplayError("the export does not match its trailer (truncated or edited)")
    if header.get("head") != len(parsed):
        raise ReplayError(
            f"the header says {header.get('head')} entries, the file has {len(parsed)}"
        )
    return header, parsed


def _check_prefix(journal: JournalBackend, parsed: list[_Parsed]) -> int:
    """How many of `parsed` the target holds already, all of them equal to the file's.

    Raises:
        ReplayError: the target holds more than the file, or something else.
    """
    present = journal.head()
    if present > len(parsed):
        raise ReplayError(
            f"{journal.location} holds {present} entries, more than the export's {len(parsed)}"
        )
    for held in journal.entries():
        if held.seq > present:
            break
        if held != parsed[held.seq - 1].entry:
            raise ReplayError(
                f"{journal.location} differs from the export at seq {held.seq}: not empty,"
                " and not an earlier import of this file"
            )
    return present


def _batches(parsed: list[_Parsed], size: int) -> Iterator[list[_Parsed]]:
    for first in range(0, len(parsed), size):
        yield parsed[first : first + size]


def import_journal(journal: JournalBackend, lines: Iterable[str], *, batch: int = 500) -> Imported:
    """Append the export `lines` to `journal`, which must be empty or hold a prefix of it.

    Raises:
        ReplayError: the file is not a whole export of this market, or the target holds
            other entries.
        JournalConflict, DuplicateEntry, StorageUnavailable: as `JournalBackend.append`
            (nothing of the failed batch is stored; run the import again).
    """
    header, parsed = _read_export(lines, journal.spec)
    with journal.writing():
        present = _check_prefix(journal, parsed)
        size = max(1, min(batch, journal.max_append))
        for group in _batches(parsed[present:], size):
            journal.append(
                [p.entry for p in group],
                bindings={p.entry.seq: p.key for p in group if p.key is not None},
                requests={p.entry.seq: p.request_id for p in group if p.request_id is not None},
            )
        acked = header.get("acked")
        if isinstance(acked, int) and 0 < acked <= len(parsed) and acked > journal.acked():
            journal.mark_acked(acked)
    return Imported(appended=len(parsed) - present, present=present)


def _open(location: str, *, existing: bool) -> JournalBackend:
    """The journal at `location` (``sqlite:PATH``, a bare path, or ``nats://...``); an
    export's SQLite source must exist already (never create one by mistyping)."""
    from exchange.sequencer import open_journal
    from exchange.tools._journal_view import open_journal as open_existing

    if existing and not location.startswith("nats://"):
        return open_existing(location.removeprefix("sqlite:"))
    return open_journal(location)


def move(args: argparse.Namespace) -> int:
    """`dex journal export` and `dex journal import`: exit 0, 2 (a bad file, journal or
    target), or 3 (the store did not answer)."""
    from exchange.protocol import ArgumentError, StorageUnavailable
    from exchange.runtime import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
    from exchange.sequencer import DuplicateEntry, JournalConflict

    name = f"dex journal {args.action}"
    location = getattr(args, "journal", None) or f"sqlite:{args.db}"
    try:
        with _open(location, existing=args.action == "export") as journal:
            if args.action == "export":
                with _output(args.out) as out:
                    count = export_journal(journal, out)
                print(f"{name}: {count} entries from {journal.location}", file=sys.stderr)
                return EXIT_OK
            with _input(args.file) as lines:
                done = import_journal(journal, lines)
            print(
                f"{name}: {done.appended} entries appended to {journal.location}"
                f" ({done.present} there already)",
                file=sys.stderr,
            )
            return EXIT_OK
    except (ReplayError, ArgumentError, JournalConflict, DuplicateEntry, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageUnavailable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as out:
        yield out


@contextmanager
def _input(path: str) -> Iterator[Iterable[str]]:
    if path == "-":
        yield sys.stdin
        return
    with open(path, encoding="utf-8") as lines:
        yield lines
