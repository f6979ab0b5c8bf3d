"""Hardened parsing of untrusted XML (RID messages and IODEF documents from peers).

Theory of operation: a RID peer is authenticated by TLS, but the body it sends
is still untrusted input (RFC 6545 section 9; XML Signature Best Practices).
The classic XML attacks and what stops each one here:

* **External entities / DTD fetches** (XXE, SSRF): the parser never loads a
  DTD, never resolves entities and never touches the network
  (``load_dtd=False, resolve_entities=False, no_network=True``).
* **Entity expansion** ("billion laughs", quadratic blow-up): a RID or IODEF
  document never needs a document type declaration, so any ``<!DOCTYPE`` or
  ``<!ENTITY`` is refused *before* parsing; the parser settings above are the
  second line of defence.
* **Huge bodies**: the size is checked before a single byte is parsed;
  :func:`read_limited` reads a stream up to the limit plus one byte and stops.
* **Deep nesting** (stack and memory exhaustion in consumers): libxml2 stops
  at its own depth limit (``huge_tree`` stays off); we then enforce a much
  lower limit fitting IODEF (``max_depth``).

Only UTF-8 (or its ASCII subset) is accepted: the byte scan for ``<!DOCTYPE``
must see what the parser sees, and RFC 6546 peers send ``text/xml`` in UTF-8
in practice. Every refusal is a :class:`~darknet_iodef.errors.DocumentError`
naming the source and the reason; nothing else escapes.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Final

from lxml import etree

from darknet_iodef.errors import DocumentError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "parse_untrusted",
    "read_limited",
    "safe_parser",
]

#: largest document accepted (a day's report for a large network is well under this)
DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
#: deepest element nesting accepted; a signed RID Report with IODEF 2.0 is about 12 deep
DEFAULT_MAX_DEPTH: Final = 64

_DECL = re.compile(rb"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_NOT_XML_START = "not well-formed XML (does not start with '<'; only UTF-8 is accepted)"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00<", b"<\x00")


def safe_parser() -> etree.XMLParser:
    """An lxml parser that loads no DTD, resolves no entity and uses no network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=False,
        collect_ids=False,
    )


def read_limited(stream: BinaryIO, limit: int, source: str) -> bytes:
    """Read a whole body from ``stream`` but never more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise DocumentError(source, f"byte {limit}", f"document larger than the limit of {limit} bytes")
    return b"".join(chunks)


def _depth_over(root: etree._Element, max_depth: int) -> int:
    """0 if the tree is within ``max_depth``, else the depth found (iterative walk)."""
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > max_depth:
            return depth
        stack.extend((child, depth + 1) for child in elem)
    return 0


def parse_untrusted(
    data: bytes,
    source: str = "document",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> etree._Element:
    """Parse an untrusted XML document; refuse anything hostile with DocumentError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DocumentError(source, "", f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DocumentError(source, "", f"document of {len(data)} bytes exceeds the limit of {max_bytes}")
    data = bytes(data)
    if not data.strip():
        raise DocumentError(source, "", "empty document")
    if data.startswith(_UTF16_BOMS):
        raise DocumentError(source, "byte 0", "only UTF-8 documents are accepted (found UTF-16)")
    head = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not head.lstrip(b" \t\r\n").startswith(b"<"):
        # also stops EBCDIC and other encodings where the byte scan below would see nothing
        raise DocumentError(source, "byte 0", _NOT_XML_START)
    m = _ENCODING.match(head)
    if m and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        raise DocumentError(
            source, "byte 0", f"only UTF-8 documents are accepted (declared {m.group(1).decode()})"
        )
    decl = _DECL.search(data)
    if decl:
        kind = decl.group(1).decode().upper()
        raise DocumentError(
            source, f"byte {decl.start()}", f"document type declarations are refused (found <!{kind})"
        )
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None) or 0
        msg = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0] if str(exc) else "syntax error"
        raise DocumentError(source, f"line {line}", f"not well-formed XML ({msg})") from None
    except (ValueError, MemoryError) as exc:
        raise DocumentError(source, "", f"not parseable XML ({exc})") from None
    if root is None:
        raise DocumentError(source, "", "no root element")
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:  # second line of defence: never reached today
        raise DocumentError(source, "", "document type declarations are refused")
    depth = _depth_over(root, max_depth)
    if depth:
        raise DocumentError(source, "", f"elements nested deeper than the limit of {max_depth}")
    return root
