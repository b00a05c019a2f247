"""``--journal`` values: which `JournalBackend` a sequencer opens, and where."""

from __future__ import annotations

from exchange.protocol import ArgumentError
from exchange.sequencer._backend import JournalBackend, WriterLease
from exchange.sequencer._journal import Journal
from orderbook_core import DEFAULT_SPEC, MarketSpec

__all__ = ["open_journal", "open_lease"]


def open_journal(
    location: str, spec: MarketSpec = DEFAULT_SPEC, *, timeout: float = 5.0
) -> JournalBackend:
    """Open the journal `location` names.

    ``sqlite:PATH`` (or a bare PATH) is the SQLite file; ``nats://host:port[,nats://...]``
    the market's stream on those JetStream servers (nats-py, the ``jetstream`` extra, is
    imported only then), each answer awaited at most `timeout` seconds.

    Raises:
        ArgumentError: `location` is malformed, or nats-py is not installed.
        StorageUnavailable: no NATS server answered.
        sqlite3.Error: the SQLite file cannot be opened.
    """
    if location.startswith("nats://"):
        servers = [url.strip() for url in location.split(",") if url.strip()]
        bad = [url for url in servers if not url.startswith("nats://")]
        if bad:
            raise ArgumentError(f"--journal: not a nats:// URL: {bad[0]!r}")
        try:
            from exchange.sequencer._jetstream import JetStreamJournal
        except ImportError as exc:
            raise ArgumentError(
                f"--journal {location}: needs nats-py: pip install"
                " 'distributed-exchange[jetstream]'"
            ) from exc
        return JetStreamJournal(servers, spec, timeout=timeout)
    path = location.removeprefix("sqlite:")
    if not path:
        raise ArgumentError("--journal: sqlite: needs a path, e.g. sqlite:data/submit_journal.db")
    return Journal(path, spec)


def open_lease(journal: JournalBackend, *, ttl: float) -> WriterLease | None:
    """The writer's lease of `journal` if several sequencers may share it (JetStream:
    an active one and standbys), each lease living `ttl` seconds unrenewed when its
    bucket is created; None for a SQLite journal (its lock file keeps one writer).

    Raises:
        StorageUnavailable: the lease's bucket cannot be opened.
    """
    if isinstance(journal, Journal):
        return None
    from exchange.sequencer._jetstream import JetStreamJournal
    from exchange.sequencer._lease import JetStreamLease

    if not isinstance(journal, JetStreamJournal):
        return None
    return JetStreamLease(journal, ttl=ttl)
