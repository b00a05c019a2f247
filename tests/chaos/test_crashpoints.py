"""`exchange.runtime.crash_point`: the plan's syntax, and a real SIGKILL on the planned pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from chaos.harness import map_in_flight
from exchange.runtime._crashpoints import ENV_VAR, parse_crash_plan

_PROGRAM = """
import sys
from exchange.runtime._crashpoints import crash_point
for i in range(1, 6):
    crash_point("other")
    crash_point("here")
    print(i, flush=True)
"""


def test_the_plan_names_points_passes_and_delays() -> None:
    assert parse_crash_plan("") == {}
    assert parse_crash_plan("a:3") == {"a": (3, 0.0)}
    assert parse_crash_plan("a:1+20, b_c:7") == {"a": (1, 0.02), "b_c": (7, 0.0)}


@pytest.mark.parametrize("bad", ["a", "a:", ":3", "a:0", "a:x", "a:2+", "a:2+1.5"])
def test_a_malformed_plan_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=ENV_VAR):
        parse_crash_plan(bad)


def _run(plan: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    if plan is not None:
        env[ENV_VAR] = plan
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_the_process_dies_by_sigkill_on_the_planned_pass() -> None:
    run = _run("here:3")
    assert run.returncode == -signal.SIGKILL
    assert run.stdout.split() == ["1", "2"]  # passes 1 and 2 went on; the 3rd killed
    assert run.stderr == "crash point here pass 3: SIGKILL\n"


def test_without_a_plan_nothing_happens() -> None:
    run = _run(None)
    assert (run.returncode, run.stdout.split(), run.stderr) == (0, list("12345"), "")


def test_a_matcher_log_says_whether_a_map_was_in_flight() -> None:
    started = "x DEBUG exchange.matcher: orderbook_updated: map of abc started"
    ended = "x DEBUG exchange.matcher: orderbook_updated: map of abc ended"
    killed = "crash point during_broadcast pass 2: SIGKILL"
    assert map_in_flight("\n".join([started, ended, started, killed]))
    assert not map_in_flight("\n".join([started, ended, killed]))
    assert not map_in_flight(killed)  # no map at all: not in flight
