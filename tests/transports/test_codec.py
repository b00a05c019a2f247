"""The sans-I/O codec: client and server ends joined in memory, bounds, garbage input."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports import PayloadTooLarge, ProtocolError
from transports._codec import (
    MAX_BODY_BYTES,
    ClientCodec,
    CodecError,
    Reply,
    Request,
    ServerCodec,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    wants_gzip,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


class CodecPair:
    """A client codec and a server codec joined in memory, like h11's ConnectionPair."""

    def __init__(self, *, compress: bool = False, max_size: int = MAX_BODY_BYTES) -> None:
        self.client = ClientCodec(compress=compress, max_size=max_size)
        self.server = ServerCodec(max_size=max_size)

    def exchange(self, rid: str, key: str, payload: Any, handler: Any) -> Reply:
        body = self.client.request(rid, key, payload)
        headers = dict(self.client.headers)
        compressed = wants_gzip(headers[b"grc-compress"])
        request = self.server.request(body, compressed=compressed)
        try:
            error, data = None, handler(request)
        except Exception as exc:
            error, data = str(exc), None
        reply_body = self.server.reply(request.rid, error, data, compressed=compressed)
        return self.client.reply(reply_body, rid=rid)


@pytest.mark.parametrize("compress", [False, True])
def test_pair_round_trip(compress: bool) -> None:
    pair = CodecPair(compress=compress)
    reply = pair.exchange("r-1", "echo", {"a": [1, "x", None]}, lambda req: [req.key, req.payload])
    assert reply == Reply("r-1", None, ["echo", {"a": [1, "x", None]}])


def test_pair_error_reply() -> None:
    pair = CodecPair()

    def fail(_: Request) -> None:
        raise ValueError("ERR_NOPE: no")

    assert pair.exchange("r", "svc", 1, fail) == Reply("r", "ERR_NOPE: no", None)


@pytest.mark.parametrize("compress", [False, True])
@settings(max_examples=60, deadline=None)
@given(payload=json_values, rid=st.text(min_size=1, max_size=40))
def test_pair_any_json_round_trips(compress: bool, payload: Any, rid: str) -> None:
    reply = CodecPair(compress=compress).exchange(rid, "k", payload, lambda req: req.payload)
    assert reply.rid == rid
    assert reply.error is None
    assert json.dumps(reply.data, sort_keys=True) == json.dumps(payload, sort_keys=True)


def test_request_wire_format_is_nodes() -> None:
    assert encode_request("rid", "svc", {"x": 1}) == b'["rid","svc",{"x":1}]'
    assert encode_reply("rid", None, [1]) == b'["rid",null,[1]]'
    assert encode_reply("rid", "ERR_X", [1]) == b'["rid","ERR_X",null]'
    assert encode_reply("rid", "", None) == b'["rid","ERR_UNKNOWN",null]'


def test_gzip_bodies_interoperate_with_stdlib_gzip() -> None:
    body = encode_request("r", "k", "v" * 100, compress=True)
    assert json.loads(gzip.decompress(body)) == ["r", "k", "v" * 100]
    assert decode_request(gzip.compress(b'["r","k",1]'), compressed=True) == Request("r", "k", 1)
    # Concatenated gzip members decode as one body, like zlib.gunzip in Node.
    two = gzip.compress(b'["r","k",') + gzip.compress(b"2]")
    assert decode_request(two, compressed=True) == Request("r", "k", 2)


def test_gzip_flag_with_plain_body_is_read_as_plain() -> None:
    # Node's server keeps the body when gunzip fails; we accept a plain JSON body too.
    assert decode_request(b'["r","k",3]', compressed=True) == Request("r", "k", 3)


def test_integer_rid_is_echoed_with_its_type() -> None:
    request = decode_request(b'[7,"k",null]')
    assert request.rid == 7
    assert ServerCodec().reply(request.rid, None, 1, compressed=False) == b"[7,null,1]"
    with pytest.raises(CodecError, match="does not match"):
        ClientCodec().reply(b'["7",null,1]', rid=7)


@pytest.mark.parametrize(
    ("body", "code", "rid"),
    [
        (b"", "ERR_JSON", None),
        (b"\xff\xfe", "ERR_UTF8", None),
        (b'["r","k",', "ERR_JSON", None),
        (b'["r","k",NaN]', "ERR_JSON", None),
        (b'["r","k",Infinity]', "ERR_JSON", None),
        (b'{"rid":"r"}', "ERR_SHAPE", None),
        (b"42", "ERR_SHAPE", None),
        (b"[]", "ERR_SHAPE", None),
        (b'["r","k"]', "ERR_SHAPE", "r"),
        (b'["r","k",1,2]', "ERR_SHAPE", "r"),
        (b'["r",5,1]', "ERR_SHAPE", "r"),
        (b'["r","",1]', "ERR_SHAPE", "r"),
        (b'[true,"k",1]', "ERR_SHAPE", None),
        (b'[null,"k",1]', "ERR_SHAPE", None),
        (b"[" * 100_000, "ERR_JSON", None),
        (b'["r","k",' + b"9" * 5000 + b"]", "ERR_JSON", None),
        (b'\xef\xbb\xbf["r","k",1]', "ERR_JSON", None),
    ],
)
def test_malformed_requests_give_precise_errors(body: bytes, code: str, rid: object) -> None:
    with pytest.raises(CodecError) as info:
        decode_request(body)
    assert info.value.code == code
    assert info.value.rid == rid
    assert isinstance(info.value, ProtocolError)
    assert str(info.value).startswith(code + ": ")


def test_body_bound_is_checked_before_parsing() -> None:
    with pytest.raises(CodecError) as info:
        decode_request(b" " * 101 + b'["r","k",1]', max_size=100)
    assert info.value.code == "ERR_BODY_TOO_LARGE"
    with pytest.raises(PayloadTooLarge):
        encode_request("r", "k", "x" * 200, max_size=100)
    with pytest.raises(PayloadTooLarge):
        encode_reply("r", None, "x" * 200, max_size=100)


def test_gzip_bomb_stops_at_the_bound() -> None:
    bomb = gzip.compress(b'["r","k","' + b"a" * 5_000_000 + b'"]')
    assert len(bomb) < 10_000
    with pytest.raises(CodecError) as info:
        decode_request(bomb, compressed=True, max_size=100_000)
    assert info.value.code == "ERR_BODY_TOO_LARGE"


def test_broken_gzip() -> None:
    body = gzip.compress(b'["r","k",1]')
    with pytest.raises(CodecError) as info:
        decode_request(body[:-6], compressed=True)
    assert info.value.code == "ERR_GZIP"
    with pytest.raises(CodecError) as info:
        decode_request(b"\x1f\x8b" + b"garbage", compressed=True)
    assert info.value.code == "ERR_GZIP"


def test_unencodable_values() -> None:
    with pytest.raises(CodecError) as info:
        encode_request("r", "k", float("nan"))
    assert info.value.code == "ERR_ENCODE"
    with pytest.raises(CodecError):
        encode_request("r", "k", {1, 2})
    server = ServerCodec()
    assert json.loads(server.reply("r", None, {1}, compressed=False))[1].startswith(
        "ERR_REPLY_ENCODE"
    )
    small = ServerCodec(max_size=50)
    assert json.loads(small.reply("r", None, "x" * 100, compressed=False))[1].startswith(
        "ERR_REPLY_TOO_LARGE"
    )
    assert small.error_reply(object(), "ERR_X") == b'[null,"ERR_X",null]'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'["r",null,1]', Reply("r", None, 1)),
        (b'["r",false,1]', Reply("r", None, 1)),
        (b'["r","",1]', Reply("r", None, 1)),  # falsy error: success, as in Node
        (b'["r","ERR_X",null]', Reply("r", "ERR_X", None)),
        (b'["r",{"m":1},null]', Reply("r", '{"m": 1}', None)),
    ],
)
def test_reply_errors_read_like_node(body: bytes, expected: Reply) -> None:
    assert decode_reply(body) == expected


@pytest.mark.parametrize("body", [b'{"r":1}', b'["r",null]', b'["r",null,1,2]', b"null", b"7"])
def test_reply_shape_errors(body: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode_reply(body)
    assert info.value.code == "ERR_SHAPE"


def test_client_rejects_reply_for_another_request() -> None:
    with pytest.raises(CodecError, match="does not match"):
        ClientCodec().reply(b'["other",null,1]', rid="mine")


def test_wants_gzip() -> None:
    assert wants_gzip(b"gzip")
    assert wants_gzip("x-gzip")
    assert not wants_gzip(b"none")
    assert not wants_gzip(None)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), compressed=st.booleans())
def test_fuzz_garbage_bytes(body: bytes, compressed: bool) -> None:
    for decode in (decode_request, decode_reply):
        try:
            value = decode(body, compressed=compressed, max_size=200)
        except CodecError:
            continue
        assert isinstance(value, Request | Reply)


def _outcome(decode: Any, body: bytes, **options: Any) -> Request | Reply | str:
    """What `decode` makes of `body`: the decoded value, or the CodecError's code."""
    try:
        value: Request | Reply = decode(body, **options)
    except CodecError as exc:
        return exc.code
    return value


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
def test_fuzz_garbage_behind_gzip_magic(body: bytes) -> None:
    plain = _outcome(decode_request, body, max_size=1000)
    # A gzipped body decodes exactly as its plain bytes do, error code included.
    assert _outcome(decode_request, gzip.compress(body), compressed=True, max_size=1000) == plain
    # zlib is not gzip: without the magic the body is read as it is (as Node does), and
    # its binary header is never valid UTF-8 JSON.
    assert _outcome(decode_request, zlib.compress(body), compressed=True, max_size=1000) in (
        "ERR_UTF8",
        "ERR_JSON",
    )
    # The magic followed by garbage is a gzip error (or, by chance, a valid stream).
    behind_magic = _outcome(decode_request, b"\x1f\x8b" + body, compressed=True, max_size=1000)
    assert isinstance(behind_magic, Request) or behind_magic in (
        "ERR_GZIP",
        "ERR_BODY_TOO_LARGE",
        "ERR_UTF8",
        "ERR_JSON",
        "ERR_SHAPE",
    )
    if not body.startswith(b"\x08"):  # not even a deflate header: never a stream
        assert behind_magic == "ERR_GZIP"


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_fuzz_json_shapes(value: Any) -> None:
    body = json.dumps(value).encode()
    three = isinstance(value, list) and len(value) == 3
    request = _outcome(decode_request, body)
    if three and isinstance(value[1], str) and value[1] and _is_rid(value[0]):
        assert request == Request(*value)
    else:
        assert request == "ERR_SHAPE"  # valid JSON, so never a JSON or UTF-8 error
    reply = _outcome(decode_reply, body)
    if three:
        assert isinstance(reply, Reply)
        assert reply.rid == value[0]
        assert reply.data == value[2]
        assert (reply.error is None) == (not value[1])
    else:
        assert reply == "ERR_SHAPE"


def _is_rid(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
