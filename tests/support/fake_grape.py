"""A scripted stand-in for a grape's HTTP API, for tests of the link's quirk handling.

```python
async def script(path: str, data: Any) -> bytes: ...   # the raw reply body
async with fake_grape(script) as url:                   # "http://127.0.0.1:<port>"
    ...
```
`script` sees each call's path (``/lookup``...) and the parsed ``data`` field and
returns the raw body (HTTP 200), or ``(status, body)``. Keep-alive works like a grape's.
Every call is also appended to the yielded `FakeGrape.calls`; `connections` counts
the connections accepted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h11

__all__ = ["FakeGrape", "Script", "fake_grape", "grape_reply"]

Script = Callable[[str, Any], Awaitable[bytes | tuple[int, bytes]]]


def grape_reply(value: Any) -> bytes:
    """What a grape sends for `value`: ``JSON.stringify(value)``; None gives b""."""
    return b"" if value is None else json.dumps(value).encode()


@dataclass
class FakeGrape:
    url: str
    calls: list[tuple[str, Any]] = field(default_factory=list)
    connections: int = 0


async def _serve(stream: anyio.abc.ByteStream, script: Script, grape: FakeGrape) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            body = b""
            path = ""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                elif isinstance(event, h11.Request):
                    path = event.target.decode()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            data = json.loads(body).get("data")
            grape.calls.append((path, data))
            result = await script(path, data)
            status, reply = result if isinstance(result, tuple) else (200, result)
            headers = [(b"content-length", str(len(reply)).encode())]
            await stream.send(
                conn.send(h11.Response(status_code=status, headers=headers))
                + (conn.send(h11.Data(data=reply)) or b"")
                + (conn.send(h11.EndOfMessage()) or b"")
            )
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


@asynccontextmanager
async def fake_grape(script: Script) -> AsyncIterator[FakeGrape]:
    """Serve `script` on a free loopback port for the block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    grape = FakeGrape(f"http://127.0.0.1:{port}")

    async def handle(stream: anyio.abc.SocketStream) -> None:
        grape.connections += 1
        await _serve(stream, script, grape)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield grape
        tg.cancel_scope.cancel()
