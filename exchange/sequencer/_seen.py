"""The dedupe keys a journal may hold, in memory: most lookups need no trip to the journal.

Every new order, cancel and modify is looked up by its dedupe key before it is numbered
(`exchange.sequencer.SubmitWorker`), and almost every key is new. A journal lookup is
a trip to a worker thread and back, which at one order per request costs the sequencer
more than the lookup itself. `SeenKeys` is a Bloom filter of every key the journal held
when the worker started plus every key queued since: a key it has not seen is not in
the journal (no false negatives), so only the keys it may have seen (those, and about
one new key in a hundred) go to the journal. Keys are added when queued, before their
commit, so a commit whose outcome was unknown (stored after all) is covered too.

Only for a journal this worker alone writes (the SQLite `Journal`, under its file's
writer lock): its keys are scanned once at start, in a thread (`load_seen`), and
lookups go to the journal as before until the scan is done. A journal other writers
share (JetStream, with a lease) is not scanned: every lookup goes to it.

Sizes: 10 bits a key (10 million keys: about 12 MB), 7 probes, a false positive about
1% of the time; the filter grows by layers of twice the capacity as keys come. The scan
costs about 2 µs of CPU a key (10 million keys: ~20 s, in a thread, while serving).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

__all__ = ["ScansKeys", "SeenKeys", "load_seen"]

_BITS_PER_KEY = 10
_PROBES = 7
_FIRST_CAPACITY = 1 << 16


class _Layer:
    """One Bloom filter of a fixed capacity (bits: a power of two)."""

    __slots__ = ("bits", "capacity", "count", "mask")

    def __init__(self, capacity: int) -> None:
        size = 1 << max(6, (capacity * _BITS_PER_KEY - 1).bit_length())
        self.bits = bytearray(size // 8)
        self.mask = size - 1
        self.capacity = capacity
        self.count = 0

    def add(self, h: int) -> None:
        bits, mask = self.bits, self.mask
        step = (h >> 32) | 1
        for _ in range(_PROBES):
            i = h & mask
            bits[i >> 3] |= 1 << (i & 7)
            h += step
        self.count += 1

    def __contains__(self, h: int) -> bool:
        bits, mask = self.bits, self.mask
        step = (h >> 32) | 1
        for _ in range(_PROBES):
            i = h & mask
            if not bits[i >> 3] & (1 << (i & 7)):
                return False
            h += step
        return True


class SeenKeys:
    """A set of keys that may answer "maybe" for a key never added, never "no" for one
    that was (a scalable Bloom filter). Keys are hashed with `hash` (this process only)."""

    def __init__(self, keys: Iterable[object] = ()) -> None:
        self._layers = [_Layer(_FIRST_CAPACITY)]
        for key in keys:
            self.add(key)

    def add(self, key: object) -> None:
        layer = self._layers[-1]
        if layer.count >= layer.capacity:
            layer = _Layer(layer.capacity * 2)
            self._layers.append(layer)
        layer.add(hash(key) & 0xFFFF_FFFF_FFFF_FFFF)

    def __contains__(self, key: object) -> bool:
        h = hash(key) & 0xFFFF_FFFF_FFFF_FFFF
        return any(h in layer for layer in self._layers)

    def __len__(self) -> int:
        """Keys added (a key added twice counts twice)."""
        return sum(layer.count for layer in self._layers)


@runtime_checkable
class ScansKeys(Protocol):
    """A journal that only this worker writes while it runs, and that can list its keys
    (the SQLite `exchange.sequencer.Journal`)."""

    def dedupe_keys(self) -> Iterator[tuple[str, str, str]]: ...


def load_seen(journal: ScansKeys) -> SeenKeys:
    """A filter of every key `journal` holds (blocking: run it in a thread)."""
    return SeenKeys(journal.dedupe_keys())
