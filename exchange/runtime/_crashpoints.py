"""A test hook: kill this process with SIGKILL at a named moment, as a crash would.

The workers call `crash_point(name)` at the moments a crash matters most (after the
journal commit and before the replies, after a version is put and before the matcher
records it, in the middle of a batch, during a broadcast). Nothing happens unless the
environment variable ``DEX_CRASH_AT`` names the point when the process starts::

    DEX_CRASH_AT=after_journal_commit:3        # SIGKILL the 3rd time the point is passed
    DEX_CRASH_AT=during_broadcast:2+20         # ... 20 ms after the 2nd pass (the work
                                               # that follows the point is under way)
    DEX_CRASH_AT=mid_batch:5,after_record:9    # several points: the first one reached

The chaos suite (``tests/chaos/``) sets it for the worker it means to kill, and reads the
line written to stderr just before the kill to know where the process died. Without the
variable a call is one truthiness test of an empty dict: nothing to measure on the hot
path. It is not an operator's tool: never set it in production.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["ENV_VAR", "crash_point", "parse_crash_plan"]

ENV_VAR = "DEX_CRASH_AT"


def parse_crash_plan(text: str) -> dict[str, tuple[int, float]]:
    """Parse ``name:N[+ms],...`` into ``{name: (N, delay in seconds)}``.

    Raises:
        ValueError: a part is not ``name:N`` or ``name:N+ms`` with N >= 1, ms >= 0.
    """
    plan: dict[str, tuple[int, float]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, colon, when = part.partition(":")
        count, plus, delay = when.partition("+")
        if not (colon and name and count.isdigit() and int(count) >= 1):
            raise ValueError(f"{ENV_VAR}: expected name:N[+ms], got {part!r}")
        if plus and not delay.isdigit():
            raise ValueError(f"{ENV_VAR}: the delay of {part!r} is not whole milliseconds")
        plan[name] = (int(count), int(delay) / 1000 if plus else 0.0)
    return plan


_plan = parse_crash_plan(os.environ.get(ENV_VAR, ""))
_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Count a pass of the point `name`; SIGKILL the process on the planned pass.

    The kill is announced on stderr (``crash point <name> pass <N>: SIGKILL``) with one
    unbuffered write, so the log says where the process died. With a delay, a daemon
    thread kills the process that many ms later and the caller goes on meanwhile.
    """
    if not _plan:
        return
    planned = _plan.get(name)
    if planned is None:
        return
    passes = _passes[name] = _passes.get(name, 0) + 1
    count, delay = planned
    if passes != count:
        return
    os.write(2, f"crash point {name} pass {passes}: SIGKILL\n".encode())
    if delay:
        timer = threading.Timer(delay, _kill)
        timer.daemon = True
        timer.start()
    else:
        _kill()


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
