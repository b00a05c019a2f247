"""The run book as real processes: grapes, both workers and clients, each its own PID.

`Exchange` starts the two workers the way an operator would
(`.venv/bin/python bin/submitOrderWorker.py grape=... --db ...`), one per grape, and runs
clients (`bin/client.py ... --once --json`), returning their JSON lines. Every process
is started in its own session and killed by its PID in `close()` (tests call it in a
`finally`, through the module fixtures). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from support.grapes import Grape, running_grapes

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").is_dir() else sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The checkout first: the scripts must run this tree's code, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """One started process; its output goes to a log file."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    _file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL, by PID: no cleanup, no goodbye, as a crash."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._file.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._file.close()

    def wait_for_text(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {needle!r} in {timeout} s:\n{self.text()}")
            time.sleep(0.05)


def start_proc(
    name: str, argv: list[str], log: Path, *, cwd: Path, env: dict[str, str], python: bool = False
) -> Proc:
    """`argv` (a script run by this Python if `python`) in a session of its own, its
    output in `log`; stop it with `Proc.stop` (by its PID)."""
    out = log.open("wb")
    popen = subprocess.Popen(
        [PYTHON, *argv] if python else argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(name, argv, popen, log, out)


@dataclass
class ClientRun:
    """What one `bin/client.py ... --once --json` run printed, and how it exited."""

    argv: list[str]
    returncode: int
    records: list[dict[str, Any]]
    stderr: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == kind]

    @property
    def done(self) -> dict[str, Any]:
        done = self.of("done")
        assert done, f"no done line: rc={self.returncode} {self.argv}\n{self.stderr}"
        return done[-1]

    @property
    def seq(self) -> int:
        (submitted,) = self.of("submitted")
        return int(submitted["seq"])

    def filled(self) -> int:
        """The total amount this client's fills report, in lots of 0.001."""
        return sum(round(float(f["amount"]) * 1000) for f in self.of("fill"))


class Exchange:
    """Both workers as processes, on two grapes, with their data in `workdir`."""

    def __init__(self, grapes: Sequence[str], workdir: Path) -> None:
        self.grapes = list(grapes)
        self.workdir = workdir
        self.journal = workdir / "submit_journal.db"
        self.process_db = workdir / "process_state.db"
        self.procs: list[Proc] = []
        self.submit: Proc | None = None
        self.process: Proc | None = None
        self._count = 0

    # -------------------------------------------------------------- processes

    def spawn(self, name: str, argv: list[str]) -> Proc:
        self._count += 1
        log = self.workdir / f"{self._count:03d}-{name}.log"
        proc = start_proc(name, argv, log, cwd=REPO, env=_env(), python=True)
        self.procs.append(proc)
        return proc

    def start_submit(self, *, timeout: float = 30) -> Proc:
        argv = ["bin/submitOrderWorker.py", f"grape={self.grapes[0]}", "--db", str(self.journal)]
        self.submit = self.spawn("submit", argv)
        self.submit.wait_for_text("submit_order worker ready", timeout)
        return self.submit

    def start_process(self, *, timeout: float = 30) -> Proc:
        grape = self.grapes[1 % len(self.grapes)]
        argv = ["bin/processOrderWorker.py", f"grape={grape}", "--db", str(self.process_db)]
        self.process = self.spawn("process", argv)
        self.process.wait_for_text("process_order worker ready", timeout)
        return self.process

    def start_watcher(self, client_id: str, *, grape: int = 0) -> Proc:
        """A client with no order and no --once: it watches until killed."""
        argv = ["bin/client.py", f"clientId={client_id}", f"grape={self.grapes[grape]}", "--json"]
        return self.spawn(f"watch-{client_id}", argv)

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:
                if proc.alive():
                    os.kill(proc.pid, signal.SIGKILL)

    # -------------------------------------------------------------- clients

    def client_argv(
        self, words: Sequence[str], *, grape: int = 0, timeout: float = 60
    ) -> list[str]:
        return [
            "bin/client.py",
            *words,
            f"grape={self.grapes[grape % len(self.grapes)]}",
            "--once",
            "--json",
            f"--timeout={timeout}",
        ]

    def start_client(self, words: Sequence[str], *, grape: int = 0, timeout: float = 60) -> Proc:
        return self.spawn("client", self.client_argv(words, grape=grape, timeout=timeout))

    def finish(self, proc: Proc, *, timeout: float = 90) -> ClientRun:
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill9()
            raise
        proc._file.close()
        records, other = [], []
        for line in proc.text().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                other.append(line)
        return ClientRun(proc.argv, proc.popen.returncode, records, "\n".join(other))

    def run_client(self, words: Sequence[str], *, grape: int = 0, timeout: float = 60) -> ClientRun:
        return self.finish(self.start_client(words, grape=grape, timeout=timeout))

    def run_clients(
        self, orders: Sequence[Sequence[str]], *, timeout: float = 60
    ) -> list[ClientRun]:
        """Start every client at once (alternating grapes); wait for all."""
        procs = [self.start_client(w, grape=i, timeout=timeout) for i, w in enumerate(orders)]
        with ThreadPoolExecutor(max_workers=len(procs) or 1) as pool:
            return list(pool.map(self.finish, procs))

    # -------------------------------------------------------------- checking

    def replay(self, upto: int | None = None) -> dict[str, Any]:
        """`dex replay --db <journal> --json [--upto N]`, run as its own process."""
        argv = [PYTHON, "-m", "exchange.tools", "replay", "--db", str(self.journal), "--json"]
        if upto is not None:
            argv += ["--upto", str(upto)]
        proc = subprocess.run(
            argv, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def watch_once(self, client_id: str, *, grape: int = 0) -> ClientRun:
        """A watch-only client with --once: its replica at the head it first saw."""
        return self.run_client([f"clientId={client_id}"], grape=grape)


@contextmanager
def running_exchange(workdir: Path) -> Iterator[Exchange]:
    """Two fresh grapes and both workers; everything stopped by PID on the way out.

    The grapes are private: service names are fixed and grapes keep dead peers announced
    for ever, so sharing them with other tests would make these talk to dead workers.
    """
    with running_grapes(2) as grapes, exchange_on(grapes, workdir) as exchange:
        yield exchange


@contextmanager
def exchange_on(grapes: list[Grape], workdir: Path) -> Iterator[Exchange]:
    """Both workers (submit on the first grape, process on the second), stopped by PID."""
    exchange = Exchange([g.url for g in grapes], workdir)
    try:
        exchange.start_process()
        exchange.start_submit()
        yield exchange
    finally:
        exchange.close()
