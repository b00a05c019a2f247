"""What the grapes serve, counted by kind and by who asks: for ``e2e_bench.py
--count-grape-calls``.

The grapes run unmodified, with ``bench/node/grape_counter.js`` preloaded (``node
--require``): it counts each HTTP API call by path and name (lookup and announce carry
the service name) and by the client's TCP port, and each DHT message the grape sends, and
writes them to ``<dir>/<grape pid>.json``. While the load runs, `PortOwners` samples
``ss -tnp`` to learn which process owns each client port; `attribute` then turns the
grapes' counters into ``{who: {call: count}}``.

The counters cost the grapes some CPU: CPU figures are taken in runs without them.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

COUNTER_JS = Path(__file__).resolve().parent / "node" / "grape_counter.js"

_SS_LINE = re.compile(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)")


def counter_env(env: dict[str, str], directory: Path) -> dict[str, str]:
    """`env` for a grape that counts its calls into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    options = f"{env.get('NODE_OPTIONS', '')} --require {COUNTER_JS}".strip()
    return {**env, "NODE_OPTIONS": options, "GRAPE_COUNTER_DIR": str(directory)}


def read_counts(directory: Path, pid: int) -> dict[str, Any]:
    """The counters grape `pid` last wrote (empty before its first write)."""
    try:
        counts: dict[str, Any] = json.loads((directory / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return {"http": {}, "peers": {}, "dht": {}}
    return counts


def _who(pid: int) -> str:
    """A short name for the process `pid`, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    text = " ".join(a.decode(errors="replace") for a in argv)
    for needle, name in (
        ("submitOrderWorker", "sequencer (submit worker)"),
        ("processOrderWorker", "matcher (process worker)"),
        ("client.py", "replicas (bin/client.py)"),
        ("submit_load.js", "Node load (grenache-nodejs-http)"),
        ("e2e_bench.py load", "Python load (GrenacheTransport)"),
        ("e2e_bench.py", "bench harness (head polls)"),
    ):
        if needle in text:
            return name
    return text[:60]


class PortOwners:
    """Samples ``ss -tnp`` in a thread: client port -> process, for connections to the
    given grape API ports (a port's owner is remembered after its connection closes)."""

    def __init__(self, api_ports: list[int], every: float = 0.1) -> None:
        self._api_ports = {str(p) for p in api_ports}
        self._every = every
        self.owners: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PortOwners:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        names: dict[int, str] = {}
        while not self._stop.is_set():
            out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
            for local, remote, pid in _SS_LINE.findall(out):
                if remote in self._api_ports and local not in self.owners:
                    number = int(pid)
                    if number not in names:
                        names[number] = _who(number)
                    self.owners[local] = names[number]
            time.sleep(self._every)


def difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The counters of `after` minus those of `before` (same shape)."""
    http = Counter(after["http"]) - Counter(before["http"])
    dht = Counter(after["dht"]) - Counter(before["dht"])
    peers = {}
    for port, calls in after["peers"].items():
        diff = Counter(calls) - Counter(before["peers"].get(port, {}))
        if diff:
            peers[port] = dict(diff)
    return {"http": dict(http), "peers": peers, "dht": dict(dht)}


def attribute(diff: dict[str, Any], owners: dict[str, str]) -> dict[str, dict[str, int]]:
    """``{who: {call: count}}`` for one grape's counter difference (with the number of
    client ports, i.e. TCP connections, each asker used)."""
    table: dict[str, Counter[str]] = {}
    for port, calls in diff["peers"].items():
        who = owners.get(port, "unknown (port not sampled)")
        table.setdefault(who, Counter()).update({**calls, "(connections used)": 1})
    return {who: dict(calls) for who, calls in sorted(table.items())}


def per_thousand(table: dict[str, int], orders: int) -> dict[str, float]:
    """Counts per 1,000 orders, largest first."""
    return {k: round(v * 1000 / orders, 1) for k, v in sorted(table.items(), key=lambda kv: -kv[1])}


class Counting:
    """Counts what `grapes` serve while the block runs (nothing when `directory` is None):
    ``with Counting(grapes, dir) as calls: ...``, then ``calls.report(orders)``."""

    def __init__(self, grapes: list[Any], directory: Path | None) -> None:
        self._grapes = grapes
        self._directory = directory
        self._before: list[dict[str, Any]] = []
        self._after: list[dict[str, Any]] = []
        self._owners: PortOwners | None = None

    def __enter__(self) -> Counting:
        if self._directory is not None:
            time.sleep(0.3)  # the grapes' counters are written every 200 ms
            self._before = [read_counts(self._directory, g.pid) for g in self._grapes]
            self._owners = PortOwners([g.api_port for g in self._grapes]).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._directory is not None and self._owners is not None:
            self._owners.__exit__()
            time.sleep(0.3)
            self._after = [read_counts(self._directory, g.pid) for g in self._grapes]

    def report(self, orders: int) -> dict[str, Any] | None:
        """Per 1,000 orders, each grape: its API calls by kind, by asker, and the DHT
        messages it sent."""
        if self._directory is None or self._owners is None:
            return None
        out: dict[str, Any] = {}
        for i, (after, before) in enumerate(zip(self._after, self._before, strict=True)):
            diff = difference(after, before)
            out[f"grape{i}"] = {
                "api": per_thousand(diff["http"], orders),
                "by_asker": {
                    who: per_thousand(calls, orders)
                    for who, calls in attribute(diff, self._owners.owners).items()
                },
                "dht_sent": per_thousand(diff["dht"], orders),
            }
        return out
