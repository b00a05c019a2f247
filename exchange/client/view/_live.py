"""The live view on a terminal: every version a `ClientNode` verifies, redrawn with rich.

A `ClientNode` given ``on_version=live.on_version...`` hands each verified update (its
book and all its events, not only the client's own) to the view: that is where the tape
comes from. `LiveMarket` owns the terminal: records and versions mark the screen dirty, and
its `run` task redraws at most `min_interval` apart (a busy market makes hundreds of
versions a second; a screen needs ten), and at least every second, so the lag behind
the head stays current while nothing trades.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from exchange.client._node import ClientNode
from exchange.client._replica import ReplicaUpdate
from exchange.client.view._market import MarketState
from exchange.versions import Version

__all__ = ["LiveMarket", "rich_available"]

Record = dict[str, Any]


def rich_available() -> bool:
    """Whether rich (the ``tui`` extra) is installed: without it, plain lines."""
    return importlib.util.find_spec("rich") is not None


class LiveMarket:
    """Keeps a `MarketState` on screen with `rich.live.Live`.

    Args:
        state: what to draw.
        console: a `rich.console.Console` (the terminal, or a recording one in tests).
        head: returns the matcher's head as last polled (for the lag).
        min_interval: seconds between two redraws, at least.
    """

    def __init__(
        self,
        state: MarketState,
        console: Any,
        *,
        head: Callable[[], int] = lambda: 0,
        min_interval: float = 0.1,
    ) -> None:
        self.state = state
        self._console = console
        self._head = head
        self._min_interval = min_interval
        self._dirty = anyio.Event()

    def emit(self, record: Record) -> None:
        """An `Emit`: take in a record of the client and redraw soon."""
        self.state.on_record(record)
        self._dirty.set()

    def on_version(self, node: ClientNode, update: ReplicaUpdate[Version]) -> None:
        """Take in a verified version of `node`'s replica and redraw soon."""
        self.state.on_version(node.book, update.seq, node.head.seq, update.events)
        self._dirty.set()

    def _render(self) -> Any:
        from exchange.client.view._render import render_market

        self.state.on_head(self._head())
        return render_market(self.state, self._console.size.height)

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Draw until cancelled; the last frame stays on screen."""
        from rich.live import Live

        live = Live(self._render(), console=self._console, auto_refresh=False, transient=False)
        with live:
            task_status.started()
            try:
                while True:
                    with anyio.move_on_after(1.0):
                        await self._dirty.wait()
                    self._dirty = anyio.Event()
                    live.update(self._render(), refresh=True)
                    await anyio.sleep(self._min_interval)
            finally:
                live.update(self._render(), refresh=True)
