"""The receiver's pure parts under fuzzing: the head decision and the chunked-body reader."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporter.receiver import BadChunking, BodyTooLarge, Refusal, check_request, read_chunked, read_exact

LIMIT = 4096


def chunked(parts: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n" + trailer + b"\r\n"


def test_read_chunked_known_answers() -> None:
    assert read_chunked(io.BytesIO(chunked([b"<RID", b"/>"])), LIMIT) == b"<RID/>"
    assert read_chunked(io.BytesIO(b"4;ext=1\r\n<RID\r\n2\r\n/>\r\n0\r\nX-T: 1\r\n\r\n"), LIMIT) == b"<RID/>"
    assert read_chunked(io.BytesIO(b"A\r\n0123456789\r\n0\r\n\r\n"), LIMIT) == b"0123456789"
    with pytest.raises(BodyTooLarge, match="exceeds the limit of 4096"):
        read_chunked(io.BytesIO(chunked([b"x" * 4000, b"y" * 100])), LIMIT)
    for bad, why in [(b"zz\r\n", "bad chunk size"), (b"-1\r\n", "bad chunk size"),
                     (b"\r\n", "bad chunk size"), (b"0x10\r\n", "bad chunk size"),
                     (b"4\r\n<RIDxx", "not followed by CRLF"),
                     (b"1" * 2000, "too long"), (b"0\r\n" + b"X: 1\r\n" * 40, "too many trailer")]:
        with pytest.raises(BadChunking, match=why):
            read_chunked(io.BytesIO(bad), LIMIT)
    with pytest.raises(ConnectionError, match="ended early"):
        read_chunked(io.BytesIO(b"4\r\n<RID\r\n"), LIMIT)
    with pytest.raises(ConnectionError, match="body ended after 3 of 10 bytes"):
        read_exact(io.BytesIO(b"abc"), 10)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=12), st.binary(max_size=64))
def test_read_chunked_round_trip_and_limit(parts: list[bytes], trailer: bytes) -> None:
    body = b"".join(parts)
    wire = chunked(parts)
    if len(body) > LIMIT:
        with pytest.raises(BodyTooLarge):
            read_chunked(io.BytesIO(wire), LIMIT)
    else:
        assert read_chunked(io.BytesIO(wire), LIMIT) == body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
def test_read_chunked_never_fails_otherwise(data: bytes) -> None:
    # any bytes: a body within the limit, or one of the three refusals -- never another exception
    try:
        out = read_chunked(io.BytesIO(data), LIMIT)
    except (BadChunking, BodyTooLarge, ConnectionError):
        return
    assert len(out) <= LIMIT


HEADER_VALUES = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(
    ["text/xml", "text/xml; charset=utf-8", "chunked", "100", str(LIMIT + 1), "0", "gzip", "10, 10", "²",
     "1٣", " 12 ", "9" * 40]))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["POST", "GET", "HEAD", "PUT", "BREW"]), st.text(max_size=20), HEADER_VALUES,
       HEADER_VALUES, HEADER_VALUES, st.booleans())
def test_check_request_total(method: str, path: str, ctype: str | None, length: str | None, te: str | None,
                             allowed: bool) -> None:
    head = {k: v for k, v in (("Content-Type", ctype), ("Content-Length", length),
                              ("Transfer-Encoding", te)) if v is not None}
    r = check_request(method, path, head, allowed, LIMIT)
    assert r is None or isinstance(r, Refusal)
    if r is None:
        # what passes is a POST to "/" from an allowed peer, text/xml, with a usable length
        assert allowed and method == "POST" and path.split("?", 1)[0] == "/"
        assert head["Content-Type"].split(";")[0].strip().lower() == "text/xml"
        assert (te is not None and te.strip().lower() == "chunked" and length is None) or \
            (te is None and length is not None and length.strip().isascii() and length.strip().isdigit()
             and int(length) <= LIMIT)
    else:
        assert 400 <= r.status < 600 and r.reason
