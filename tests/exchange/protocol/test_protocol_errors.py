"""`exchange._service`: the one mapping from exceptions to ERR_* reply strings."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from exchange.protocol import InvalidVersion, Refused, error_string, service_handler
from orderbook_core import ValidationError
from transports import JSON, NoPeersError, RemoteError, ServiceError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("exc", "reply"),
    [
        (Refused("ERR_SEQ_GAP", "expected 3"), "ERR_SEQ_GAP: expected 3"),
        (ValidationError("price", "must be > 0"), "ERR_VALIDATION: price: must be > 0"),
        (NoPeersError("no peer serves 'x'"), "ERR_UNAVAILABLE: NoPeersError: no peer serves 'x'"),
        (RemoteError("ERR_X: y"), "ERR_UNAVAILABLE: upstream refused: ERR_X: y"),
        (sqlite3.OperationalError("disk I/O error"), "ERR_UNAVAILABLE: storage: disk I/O error"),
        (InvalidVersion("missing page"), "ERR_BAD_REQUEST: missing page"),
        (KeyError("secret detail"), "ERR_INTERNAL: KeyError"),
    ],
)
def test_error_strings(exc: Exception, reply: str) -> None:
    assert error_string(exc) == reply


async def test_handler_turns_exceptions_into_service_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(payload: JSON) -> JSON:
        if payload == "bug":
            raise ZeroDivisionError("x")
        if payload == "gap":
            raise Refused("ERR_SEQ_GAP", "expected 1")
        return {"ok": payload}

    wrapped = service_handler("svc", handler)
    assert await wrapped(1) == {"ok": 1}
    with pytest.raises(ServiceError) as info:
        await wrapped("gap")
    assert info.value.message == "ERR_SEQ_GAP: expected 1"
    with caplog.at_level(logging.ERROR), pytest.raises(ServiceError) as info:
        await wrapped("bug")
    assert info.value.message == "ERR_INTERNAL: ZeroDivisionError"
    assert "svc: unexpected failure" in caplog.text
