"""Hostile XML is refused with DocumentError, before it can cost time, memory or a network access."""

from __future__ import annotations

import contextlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darknet_iodef.errors import DocumentError
from reporter.rid import open_report
from reporter.xmlsafe import DEFAULT_MAX_BYTES, parse_untrusted, read_limited

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<RID lang="en">&lol9;</RID>
"""


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # pragma: no cover - reached only if the parser fetched something
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'<!ENTITY x "fetched">')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_http() -> str:
    """A web server on 127.0.0.1 that records any fetch (a parser must never make one)."""
    _Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_external_entity_is_refused_and_nothing_is_fetched(tmp_path: Path, loopback_http: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    for body in (
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'.encode(),
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{loopback_http}/xxe">]><r>&x;</r>'.encode(),
        f'<!DOCTYPE r SYSTEM "{loopback_http}/dtd"><r/>'.encode(),
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{loopback_http}/param"> %p;]><r/>'.encode(),
    ):
        with pytest.raises(DocumentError) as exc:
            parse_untrusted(body, "peer")
        assert exc.value.reason == "document type declarations are refused (found <!DOCTYPE)"
    assert _Recorder.hits == []


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(DocumentError) as exc:
        parse_untrusted(BILLION_LAUGHS, "peer")
    assert exc.value.position == "byte 22"
    assert "document type declarations are refused" in exc.value.reason


def test_entity_declaration_without_doctype_keyword_case_is_refused() -> None:
    with pytest.raises(DocumentError, match="refused"):
        parse_untrusted(b'<?xml version="1.0"?><!doctype r><r/>', "peer")


def test_undeclared_entity_is_a_syntax_error_not_an_expansion() -> None:
    with pytest.raises(DocumentError) as exc:
        parse_untrusted(b"<r>&lol9;</r>", "peer")
    assert exc.value.reason.startswith("not well-formed XML")


def test_100_mb_body_is_refused_before_parsing() -> None:
    body = b"<r>" + b"A" * (100 * 1024 * 1024) + b"</r>"
    with pytest.raises(DocumentError) as exc:
        parse_untrusted(body, "peer")
    assert exc.value.reason == f"document of {len(body)} bytes exceeds the limit of {DEFAULT_MAX_BYTES}"


class _Endless(io.RawIOBase):
    """100 MB of a body that is generated on demand, counting what is read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = b"A" * n
        self.left -= n
        self.read_bytes += n
        return n


def test_streamed_100_mb_body_is_read_only_up_to_the_limit() -> None:
    stream = _Endless(100 * 1024 * 1024)
    with pytest.raises(DocumentError, match="larger than the limit of 1048576 bytes"):
        read_limited(stream, 1 << 20, "peer")  # type: ignore[arg-type]
    assert stream.read_bytes == (1 << 20) + 1
    assert read_limited(io.BytesIO(b"<r/>"), 1 << 20, "peer") == b"<r/>"


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DocumentError) as exc:
        parse_untrusted(b"<a>" * 65 + b"</a>" * 65, "peer")
    assert exc.value.reason == "elements nested deeper than the limit of 64"
    # far deeper: libxml2 stops at its own limit (256 without XML_PARSE_HUGE) while parsing
    with pytest.raises(DocumentError) as exc:
        parse_untrusted(b"<a>" * 100_000 + b"</a>" * 100_000, "peer")
    assert exc.value.reason.startswith("not well-formed XML (Excessive depth in document: 256")
    assert parse_untrusted(b"<a>" * 64 + b"</a>" * 64, "peer").tag == "a"


def test_only_utf8() -> None:
    with pytest.raises(DocumentError, match="found UTF-16"):
        parse_untrusted("<r/>".encode("utf-16"), "peer")
    with pytest.raises(DocumentError, match="declared ISO-8859-1"):
        parse_untrusted(b'<?xml version="1.0" encoding="ISO-8859-1"?><r/>', "peer")
    bom = b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><r>\xc3\xa9</r>'
    assert parse_untrusted(bom, "p").text == "é"


def test_other_encodings_cannot_hide_a_doctype_from_the_byte_scan() -> None:
    for body in ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "a">]><r>&a;</r>'.encode("cp500"),  # EBCDIC
                 b"\x00\x00\x00<\x00\x00\x00r\x00\x00\x00/\x00\x00\x00>"):  # UTF-32
        with pytest.raises(DocumentError) as exc:
            parse_untrusted(body, "peer")
        assert exc.value.reason == "not well-formed XML (does not start with '<'; only UTF-8 is accepted)"


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(DocumentError) as exc:
        parse_untrusted(b"<r>\n<a>\n</r>", "peer")
    assert exc.value.source == "peer"
    assert exc.value.position == "line 3"


@pytest.mark.parametrize("body", [b"", b"   ", "<r/>"])
def test_empty_or_not_bytes(body: object) -> None:
    with pytest.raises(DocumentError):
        parse_untrusted(body, "peer")  # type: ignore[arg-type]


def test_hostile_bodies_reach_open_report_as_document_errors() -> None:
    for body in (BILLION_LAUGHS, b"<a>" * 5000, b"\x00\xff garbage", b"<RID/>"):
        with pytest.raises(DocumentError):
            open_report(body, [])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda s: f"<r a='1'>{s}</r>".encode()))
def test_fuzz_only_document_errors(data: bytes) -> None:
    with contextlib.suppress(DocumentError):
        parse_untrusted(data, "fuzz")
