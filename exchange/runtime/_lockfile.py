"""One writer per database: an OS lock on ``<db>.lock``, held for a worker's whole life.

A second submit worker on the same journal would number and journal orders beside the
first (the journal refuses appends that do not follow its file, but both keep taking
clients), and a second process worker on the same applied log publishes versions
beside the first until one of them dies on ``UNIQUE constraint failed: applied.seq``.
SQLite's own locks last one transaction, not a process's life, so each worker takes
``flock(LOCK_EX | LOCK_NB)`` on a lock file beside its database before it opens it and
keeps it until it stops. The kernel drops the lock when the process ends, however it
ends (``kill -9`` included): a stale lock file never blocks a restart. The holder writes
its PID into the file, for the message the next worker prints.

The lock file is never deleted: unlinking it while another process waits to lock it
would let two processes each hold a lock on a different file. Readers (`dex journal`,
`dex replay`, `dex status`) take no lock. Without ``fcntl`` (Windows) there is no lock,
and one worker per database is the operator's to keep.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exchange.protocol import DatabaseInUse

__all__ = ["lock_path", "one_writer"]


def lock_path(db_path: str | Path) -> Path:
    """The lock file of the database at `db_path`: the same path plus ``.lock``."""
    return Path(f"{db_path}.lock")


if sys.platform == "win32":  # pragma: no cover - no flock; see the module docstring

    def _try_lock(fd: int) -> bool:
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file, or nothing when it holds no PID yet."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


@contextmanager
def one_writer(db_path: str | Path) -> Iterator[Path]:
    """Hold the lock of the database at `db_path` for the block; yield the lock file.

    Blocking, but only a few system calls on a local file: it never waits for the lock.

    Raises:
        DatabaseInUse: another process (or another worker of this one) holds it.
        OSError: the lock file cannot be created (e.g. a read-only directory).
    """
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            raise DatabaseInUse(
                f"{db_path} is in use by another worker{_holder(fd)}, which holds {path}:"
                " stop that one first, or give this one another --db"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
