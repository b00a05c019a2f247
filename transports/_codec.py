"""Sans-I/O codec for the grenache-nodejs-http RPC bodies.

Theory of operation
-------------------
A Grenache RPC is one HTTP exchange. The client sends the body
``[rid, key, payload]`` (JSON, UTF-8) with the header ``grc-compress: none`` or
``gzip``; the server answers ``[rid, error-or-null, data]``, gzipped when the request
was. This module turns those bodies into values and back, and nothing else: it does no
I/O, keeps no clock, and knows nothing of HTTP framing (httptools does that in
`transports.grenache`). The loopback adapter can use it to put real bytes on its fake
wire.

Bounds (all in bytes, checked before any large allocation):

- ``max_size`` (default `MAX_BODY_BYTES`, 1 MiB) bounds the body as it travels *and*,
  for gzip, the decompressed JSON text (decompression stops as soon as it passes the
  bound, so a gzip bomb costs at most ``max_size`` of memory).
- JSON nesting deeper than the interpreter allows is an error, not a crash.

Errors: decoding raises `CodecError` (a `ProtocolError`) and nothing else; its `code` is
one of ``ERR_BODY_TOO_LARGE``, ``ERR_GZIP``, ``ERR_UTF8``, ``ERR_JSON``, ``ERR_SHAPE``;
its `rid` is the request id when one could be read (so a server can still address its
error reply). Encoding raises `PayloadTooLarge` when the body passes ``max_size``, and
`CodecError` (``ERR_ENCODE``) for values JSON cannot carry (NaN, sets, lone objects).

Compatibility with the Node peers (grenache-nodejs-http 1.0.2):

- The rid is echoed exactly as received (same JSON type); errors are always non-empty
  strings (an empty error would read as success in Node).
- A reply error that is falsy (``null``, ``false``, ``""``, ``0``) means success, as in
  Node; a non-string truthy error is kept as its JSON text.
- ``grc-compress`` is gzip when the header value contains ``gzip``. Like the Node
  server, a body announced as gzip that does not start with the gzip magic bytes is
  read as plain JSON.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, NamedTuple

from transports._base import JSON
from transports._exceptions import PayloadTooLarge, ProtocolError

__all__ = [
    "COMPRESS_HEADER",
    "MAX_BODY_BYTES",
    "ClientCodec",
    "CodecError",
    "Reply",
    "Request",
    "ServerCodec",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "wants_gzip",
]

MAX_BODY_BYTES = 1 << 20
"""Default bound on a body, compressed or not, and on its decompressed JSON text."""

COMPRESS_HEADER = b"grc-compress"
"""Request header naming the body encoding: ``none`` or ``gzip``."""

_GZIP_MAGIC = b"\x1f\x8b"
_MISSING = object()


class CodecError(ProtocolError):
    """Bytes that are not a well-formed Grenache body.

    Attributes:
        code: stable code (``ERR_BODY_TOO_LARGE``, ``ERR_GZIP``, ``ERR_UTF8``,
            ``ERR_JSON``, ``ERR_SHAPE``, ``ERR_ENCODE``).
        detail: human-readable detail.
        rid: the request id when it could be read, else None.
    """

    def __init__(self, code: str, detail: str, *, rid: JSON = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.rid = rid


class Request(NamedTuple):
    """A decoded ``[rid, key, payload]`` request body."""

    rid: JSON
    key: str
    payload: JSON


class Reply(NamedTuple):
    """A decoded ``[rid, error, data]`` reply body; `error` is None on success."""

    rid: JSON
    error: str | None
    data: JSON


def wants_gzip(header_value: bytes | str | None) -> bool:
    """Whether a ``grc-compress`` header value asks for gzip (Node: ``includes('gzip')``)."""
    if header_value is None:
        return False
    if isinstance(header_value, str):
        return "gzip" in header_value
    return b"gzip" in header_value


# One encoder for every call: json.dumps with non-default options builds a new
# JSONEncoder each time (measured: a few microseconds of every small request).
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _dumps(value: JSON) -> bytes:
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError("ERR_ENCODE", f"not a JSON value: {exc}") from exc
    return text.encode("ascii")


def _bounded(body: bytes, max_size: int) -> bytes:
    if len(body) > max_size:
        raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the bound of {max_size}")
    return body


def _gzip(body: bytes) -> bytes:
    # mtime=0 keeps the output deterministic; level 6 is zlib's (and Node's) default.
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def _gunzip(body: bytes, max_size: int) -> bytes:
    """Decompress every gzip member of `body`, never producing more than `max_size`."""
    out = bytearray()
    data = body
    while data:
        decompressor = zlib.decompressobj(wbits=31)
        try:
            chunk = decompressor.decompress(data, max_size + 1 - len(out))
        except zlib.error as exc:
            raise CodecError("ERR_GZIP", str(exc)) from exc
        out += chunk
        if len(out) > max_size:
            raise CodecError("ERR_BODY_TOO_LARGE", f"decompressed body exceeds {max_size} bytes")
        if not decompressor.eof:
            if decompressor.unconsumed_tail:
                # Stopped at the output bound with input left: too large by definition.
                raise CodecError(
                    "ERR_BODY_TOO_LARGE", f"decompressed body exceeds {max_size} bytes"
                )
            raise CodecError("ERR_GZIP", "truncated gzip stream")
        data = decompressor.unused_data
    return bytes(out)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every call: json.loads(..., parse_constant=...) would build a new
# JSONDecoder each time, a measurable share of a small request's cost.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(body: bytes, *, compressed: bool, max_size: int) -> JSON:
    if len(body) > max_size:
        raise CodecError("ERR_BODY_TOO_LARGE", f"body of {len(body)} bytes exceeds {max_size}")
    if compressed and body.startswith(_GZIP_MAGIC):
        body = _gunzip(body, max_size)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError("ERR_UTF8", str(exc)) from exc
    try:
        return _DECODER.decode(text)
    except RecursionError as exc:
        raise CodecError("ERR_JSON", "nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise CodecError("ERR_JSON", str(exc)) from exc


def _finish(text: bytes, *, compress: bool, max_size: int) -> bytes:
    return _bounded(_gzip(text) if compress else text, max_size)


def _valid_rid(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# -- requests ---------------------------------------------------------------------------


def encode_request(
    rid: JSON, key: str, payload: JSON, *, compress: bool = False, max_size: int = MAX_BODY_BYTES
) -> bytes:
    """Encode the body ``[rid, key, payload]``.

    Raises:
        CodecError: `payload` is not a JSON value (``ERR_ENCODE``).
        PayloadTooLarge: the body is larger than `max_size`.
    """
    return _finish(_dumps([rid, key, payload]), compress=compress, max_size=max_size)


def decode_request(
    body: bytes, *, compressed: bool = False, max_size: int = MAX_BODY_BYTES
) -> Request:
    """Decode a request body.

    The body must be a JSON array of exactly three items: a rid (string or integer), a
    non-empty service name and the payload.

    Raises:
        CodecError: the body is not such an array; `rid` is set when it was readable.
    """
    value = _loads(body, compressed=compressed, max_size=max_size)
    if not isinstance(value, list):
        raise CodecError("ERR_SHAPE", f"expected [rid, key, payload], got {type(value).__name__}")
    rid = value[0] if value and _valid_rid(value[0]) else None
    if len(value) != 3:
        raise CodecError(
            "ERR_SHAPE", f"expected [rid, key, payload], got {len(value)} items", rid=rid
        )
    if rid is None:
        raise CodecError("ERR_SHAPE", "rid must be a string or an integer")
    key = value[1]
    if not isinstance(key, str) or not key:
        raise CodecError("ERR_SHAPE", "key must be a non-empty string", rid=rid)
    return Request(rid, key, value[2])


# -- replies ----------------------------------------------------------------------------


def encode_reply(
    rid: JSON,
    error: str | None,
    data: JSON,
    *,
    compress: bool = False,
    max_size: int = MAX_BODY_BYTES,
) -> bytes:
    """Encode the body ``[rid, error, data]``.

    An empty `error` string becomes ``"ERR_UNKNOWN"`` (Node would read "" as success);
    with an error, `data` is sent as ``null``.

    Raises:
        CodecError: `data` is not a JSON value (``ERR_ENCODE``).
        PayloadTooLarge: the body is larger than `max_size`.
    """
    if error is not None:
        return _finish(
            _dumps([rid, str(error) or "ERR_UNKNOWN", None]), compress=compress, max_size=max_size
        )
    return _finish(_dumps([rid, None, data]), compress=compress, max_size=max_size)


def decode_reply(body: bytes, *, compressed: bool = False, max_size: int = MAX_BODY_BYTES) -> Reply:
    """Decode a reply body into `Reply`.

    Raises:
        CodecError: the body is not a three-item JSON array.
    """
    value = _loads(body, compressed=compressed, max_size=max_size)
    if not isinstance(value, list) or len(value) != 3:
        shape = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
        raise CodecError("ERR_SHAPE", f"expected [rid, error, data], got {shape}")
    rid, error, data = value
    if not error:
        return Reply(rid, None, data)
    if not isinstance(error, str):
        error = json.dumps(error)
    return Reply(rid, error, data)


# -- the two ends, for HTTP adapters ----------------------------------------------------


class ClientCodec:
    """The client end: builds request bodies and headers, checks replies.

    Args:
        compress: gzip request bodies (and expect gzipped replies).
        max_size: bound on request and reply bodies (see the module docstring).
    """

    __slots__ = ("compress", "headers", "max_size")

    def __init__(self, *, compress: bool = False, max_size: int = MAX_BODY_BYTES) -> None:
        self.compress = compress
        self.max_size = max_size
        self.headers: tuple[tuple[bytes, bytes], ...] = (
            (COMPRESS_HEADER, b"gzip" if compress else b"none"),
        )

    def request(self, rid: str, key: str, payload: JSON) -> bytes:
        """Encode one request body (send it with `headers`)."""
        return encode_request(rid, key, payload, compress=self.compress, max_size=self.max_size)

    def reply(self, body: bytes, *, rid: JSON) -> Reply:
        """Decode the reply to the request `rid`.

        Raises:
            CodecError: malformed body, or a reply to another request (``ERR_SHAPE``).
        """
        reply = decode_reply(body, compressed=self.compress, max_size=self.max_size)
        if reply.rid != rid or type(reply.rid) is not type(rid):
            raise CodecError("ERR_SHAPE", f"reply rid {reply.rid!r} does not match {rid!r}")
        return reply


class ServerCodec:
    """The server end: decodes request bodies, encodes replies.

    Args:
        max_size: bound on request and reply bodies (see the module docstring).
    """

    __slots__ = ("max_size",)

    def __init__(self, *, max_size: int = MAX_BODY_BYTES) -> None:
        self.max_size = max_size

    def request(self, body: bytes, *, compressed: bool) -> Request:
        """Decode one request body; `compressed` from `wants_gzip(grc-compress)`.

        Raises:
            CodecError: malformed body; reply with `error_reply(exc.rid, str(exc))`.
        """
        return decode_request(body, compressed=compressed, max_size=self.max_size)

    def reply(self, rid: JSON, error: str | None, data: JSON, *, compressed: bool) -> bytes:
        """Encode the reply; a reply that cannot be encoded becomes an error reply.

        Never raises: `data` that is not JSON or too large turns into
        ``ERR_REPLY_ENCODE`` / ``ERR_REPLY_TOO_LARGE`` so the caller always has bytes.
        """
        try:
            return encode_reply(rid, error, data, compress=compressed, max_size=self.max_size)
        except CodecError as exc:
            return self.error_reply(rid, f"ERR_REPLY_ENCODE: {exc.detail}", compressed=compressed)
        except PayloadTooLarge as exc:
            return self.error_reply(rid, f"ERR_REPLY_TOO_LARGE: {exc}", compressed=compressed)

    def error_reply(self, rid: JSON, error: str, *, compressed: bool = False) -> bytes:
        """Encode ``[rid, error, null]``; an unencodable rid is sent as ``null``."""
        if not _valid_rid(rid):
            rid = None
        body = _dumps([rid, error or "ERR_UNKNOWN", None])
        return _gzip(body) if compressed else body
