"""The RID receiver for CSIRTs: RFC 6546 over mutual TLS, every body treated as hostile.

Theory of operation (DOMAIN.md section 7; RFC 6546 section 3; issue 4):

* Who: the TLS handshake requires a client certificate that chains to the
  configured CA; the leaf must also be on the allow-list, or the request
  gets 403 (RFC 6546: "verification of certificates against an explicit
  whitelist of peer certificates").
* What: only ``POST /`` with ``Content-Type: text/xml`` carries RID messages
  (:func:`check_request`, a pure function of method, path and headers): GET,
  HEAD and other methods on "/" get 405 with ``Allow: POST`` (RFC 6546
  erratum 3267); other paths 404; another media type 415; a body announced
  larger than the limit 413 before a byte of it is read.
* How much: the size limit is enforced while reading, for Content-Length and
  for chunked bodies (which RFC 6546 requires servers to accept), so a 100 MB
  body costs at most the limit in memory. Every connection has one deadline
  covering the TLS handshake and a request (a reaper thread shuts down the
  socket when it passes, which ends a slowloris at any stage), and at most
  ``max_connections`` are served at once.
* Whether: the body goes to :func:`reporter.rid.open_report` -- hardened
  parse (no DTD, no entities, no network), shape, exactly one enveloped
  signature from a trusted certificate, the IODEF minimum, and the XSDs when
  configured. With ``signer_must_be_peer`` (the default) the signature must
  also have been made with the key of the TLS client's certificate
  (:func:`signer_is_peer`): the allow-list says who may connect, the
  signature who vouches for the content, and without the binding an allowed
  peer A could post a report B signed (a replayed or forwarded one) as if B
  had sent it. A mismatch is 403 with the reason, counted as
  ``signer-mismatch`` and stored nowhere. A refusal is 400 with the reason; an accepted report is stored
  (:mod:`reporter.receiver_store`) and answered 200 with an empty body; a
  resend of a stored report is also 200 (sending is idempotent). Errors on
  our side (disk full) are 500, so the sender retries.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import io
import logging
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, XMLVerifier
from signxml.exceptions import SignXMLException

from darknet_iodef.errors import DocumentError
from darknet_iodef.metrics import receiver_metrics
from reporter.receiver_store import ReceiverStore, describe_report
from reporter.rid import ACCEPTED_METHODS, DS_NS, open_report
from reporter.schemas import Schemas
from reporter.tlsconfig import AllowList, PeerIdentity, peer_identity
from reporter.xmlsafe import parse_untrusted

__all__ = [
    "MEDIA_TYPE",
    "BadChunking",
    "BodyTooLarge",
    "ReceiverConfig",
    "Refusal",
    "RidServer",
    "check_request",
    "read_chunked",
    "read_exact",
    "signer_is_peer",
]

log = logging.getLogger(__name__)

#: RFC 6546: "the 'Content-type' Request and Response headers MUST be 'text/xml'"
MEDIA_TYPE = "text/xml"
_DIGITS = re.compile(r"^[0-9]{1,19}$")
#: longest chunk-size line accepted in a chunked body (hex size plus extensions)
_MAX_CHUNK_LINE = 1024


#: the reason label of darknet_receiver_refused_reports_total, per answer (a closed set)
_REASON_CLASS = {400: "invalid", 403: "forbidden", 404: "path", 405: "method", 408: "timeout",
                 411: "length-required", 413: "too-large", 415: "media-type", 431: "headers",
                 500: "internal", 501: "not-implemented"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP refusal: the status, a short reason for the peer, and whether to close."""

    status: int
    reason: str
    close: bool = True
    allow: str = ""  # the Allow header of a 405


def check_request(method: str, path: str, headers: Mapping[str, str], peer_allowed: bool,
                  max_body_bytes: int) -> Refusal | None:
    """Decide on a request from its head alone (pure); None means: read the body.

    ``headers`` holds Content-Type, Content-Length and Transfer-Encoding in
    this spelling (repeated headers joined with ", ").
    """
    if not peer_allowed:
        # first: a peer off the allow-list learns nothing else about this server
        return Refusal(403, "your certificate is not on this receiver's allow-list")
    if path.split("?", 1)[0] != "/":
        return Refusal(404, f"RID messages are posted to '/', not {path[:100]!r}")
    if method != "POST":
        return Refusal(405, "RID messages are sent with POST (RFC 6546)", allow="POST")
    media = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media != MEDIA_TYPE:
        return Refusal(415, f"Content-Type must be {MEDIA_TYPE} (RFC 6546), not {media[:60]!r}")
    te = headers.get("Transfer-Encoding")
    length = headers.get("Content-Length")
    if te is not None:
        if te.strip().lower() != "chunked":
            return Refusal(501, f"Transfer-Encoding {te[:40]!r} is not supported (only chunked)")
        if length is not None:
            # both at once is how request smuggling starts (RFC 9112 section 6.3)
            return Refusal(400, "both Transfer-Encoding and Content-Length")
        return None
    if length is None:
        return Refusal(411, "Content-Length or chunked transfer encoding is required")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    if not _DIGITS.match(length.strip()):
        return Refusal(400, f"bad Content-Length {length[:40]!r}")
    if int(length) > max_body_bytes:
        return Refusal(413, f"message of {int(length)} bytes exceeds the limit of {max_body_bytes}")
    return None


class BodyTooLarge(Exception):
    """A chunked body went over the limit while being read."""


class BadChunking(Exception):
    """A chunked body that does not follow RFC 9112 section 7.1."""


def read_exact(rfile: io.BufferedIOBase, n: int) -> bytes:
    """Exactly ``n`` bytes, read in pieces; ConnectionError when the stream ends first."""
    chunks: list[bytes] = []
    left = n
    while left:
        chunk = rfile.read(min(left, 1 << 16))
        if not chunk:
            raise ConnectionError(f"body ended after {n - left} of {n} bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    """A chunked body, never holding more than ``limit`` bytes of it (RFC 6546: servers accept chunked)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if not line:
            raise ConnectionError("chunked body ended early")
        if len(line) > _MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise BadChunking("chunk-size line too long")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise BadChunking(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if total + size > limit:
            raise BodyTooLarge(f"chunked message exceeds the limit of {limit} bytes")
        chunks.append(read_exact(rfile, size))
        total += size
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BadChunking("chunk not followed by CRLF")
    # trailer section: header lines up to an empty line, bounded in number
    for _ in range(32):
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            return b"".join(chunks)
    raise BadChunking("too many trailer lines")


_BINDING = SignatureConfiguration(
    require_x509=True, location=".//", expect_references=1, signature_methods=ACCEPTED_METHODS,
    digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}),
)


def signer_is_peer(body: bytes, peer_der: bytes, max_bytes: int) -> str | None:
    """None when the message's XML signature verifies with the key of ``peer_der``; else why not.

    Called after :func:`reporter.rid.open_report` accepted the message (one
    signature, covering the whole message, from a trusted signer), so the
    only question left is whose key made it. signxml verifies with the given
    certificate and ignores the certificates the message carries, so a
    message cannot claim the binding: it holds only if the TLS client's
    private key made the signature (proof of possession, not a name match).
    """
    try:
        peer = x509.load_der_x509_certificate(peer_der)
        root = parse_untrusted(body, "peer", max_bytes=max_bytes)
        XMLVerifier().verify(root, x509_cert=peer, expect_config=_BINDING)
    except (SignXMLException, ValueError, TypeError, DocumentError):
        pass
    else:
        return None
    claimed = _claimed_signer(body, max_bytes)
    return (f"the XML signature was not made with the key of the TLS client certificate "
            f"({peer_identity(peer_der).subject}); the message names its signer as {claimed}")


def _claimed_signer(body: bytes, max_bytes: int) -> str:
    """Subject of the first certificate in the signature's KeyInfo, for the refusal message only."""
    try:
        root = parse_untrusted(body, "peer", max_bytes=max_bytes)
        text = root.findtext(f".//{{{DS_NS}}}KeyInfo//{{{DS_NS}}}X509Certificate") or ""
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
        return cert.subject.rfc4514_string() or "an empty subject"
    except (ValueError, TypeError, DocumentError, binascii.Error):
        return "nobody readable"


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Everything the server needs, already loaded (see ``receiver_cmd`` for the settings)."""

    context: ssl.SSLContext
    allow: AllowList
    trusted: Sequence[x509.Certificate] | Path
    store: ReceiverStore
    schemas: Schemas | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout_s: float = 30.0
    max_connections: int = 32
    #: how long a new connection may wait for a free slot before it is closed
    slot_wait_s: float = 5.0
    #: the XML signature must be made with the TLS client certificate's key (see signer_is_peer)
    signer_must_be_peer: bool = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "darknet-iodef"
    sys_version = ""
    server: RidServer
    connection: ssl.SSLSocket

    peer: PeerIdentity | None
    peer_der: bytes | None
    peer_allowed: bool

    def setup(self) -> None:
        super().setup()
        der = self.connection.getpeercert(binary_form=True)
        self.peer_der = der
        self.peer = peer_identity(der) if der else None
        self.peer_allowed = self.server.config.allow.permits_der(der)

    def handle_one_request(self) -> None:
        # each request on a kept-alive connection gets a fresh deadline
        self.server._touch(self.connection)
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def version_string(self) -> str:
        return self.server_version

    def _reply(self, status: int, reason: str = "", *, close: bool = False, allow: str = "",
               metric: str | None = None) -> None:
        body = (reason + "\n").encode("utf-8", "replace") if reason else b""
        self.send_response(status)
        if body:
            # an error is not a RID message, so it is plain text, not text/xml
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        else:
            self.send_header("Content-Type", MEDIA_TYPE)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.server._count(status, metric)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the base class answers with an HTML page; a RID peer gets one line of text
        self._reply(code, message or HTTPStatus(code).phrase, close=True)

    def _head(self) -> dict[str, str]:
        """The headers check_request looks at; a repeated one is joined, so "10, 10" is refused."""
        head = {}
        for name in ("Content-Type", "Content-Length", "Transfer-Encoding"):
            values = self.headers.get_all(name)
            if values:
                head[name] = ", ".join(values)
        return head

    def handle_expect_100(self) -> bool:
        # "Expect: 100-continue" asks before sending the body: refuse from the head
        # (size, type, allow-list) so a 100 MB body is never sent at all
        refusal = check_request(self.command, self.path, self._head(), self.peer_allowed,
                                self.server.config.max_body_bytes)
        if refusal is not None:
            self._refuse(refusal)
            return False
        return super().handle_expect_100()

    def _refuse(self, r: Refusal) -> None:
        self._reply(r.status, r.reason, close=r.close, allow=r.allow)

    def _not_post(self) -> None:
        r = check_request(self.command, self.path, self._head(), self.peer_allowed,
                          self.server.config.max_body_bytes)
        assert r is not None
        # a body we do not read would be taken for the next request: close instead
        self._refuse(Refusal(r.status, r.reason, close=True, allow=r.allow))

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_post

    def do_POST(self) -> None:
        cfg = self.server.config
        refusal = check_request(self.command, self.path, self._head(), self.peer_allowed, cfg.max_body_bytes)
        if refusal is not None:
            if refusal.status == 403:
                log.warning("refused a report from %s: certificate not on the allow-list (%s)",
                            self.address_string(), self.peer.subject if self.peer else "no certificate")
            self._refuse(refusal)
            return
        try:
            if self.headers.get("Transfer-Encoding") is not None:
                body = read_chunked(self.rfile, cfg.max_body_bytes)
            else:
                body = read_exact(self.rfile, int(self.headers["Content-Length"]))
        except BodyTooLarge as exc:
            self._refuse(Refusal(413, str(exc)))
            return
        except BadChunking as exc:
            self._refuse(Refusal(400, f"malformed chunked body: {exc}"))
            return
        except (OSError, ConnectionError) as exc:
            # the peer went away or was too slow (the reaper closed the socket)
            log.info("request from %s not completed: %s", self.address_string(), exc)
            self.close_connection = True
            return
        self._accept(body)

    def _accept(self, body: bytes) -> None:
        cfg = self.server.config
        assert self.peer is not None  # allowed peers have a certificate
        source = f"peer {self.peer.subject}"
        try:
            rid_root, iodef_root = open_report(body, cfg.trusted, schemas=cfg.schemas, source=source,
                                               max_bytes=cfg.max_body_bytes)
        except DocumentError as exc:
            log.warning("refused a report: %s", exc.line())
            # the peer knows who it is: tell it where and why only
            self._reply(400, f"{exc.position}: {exc.reason}" if exc.position else exc.reason)
            return
        except Exception:
            # open_report raises DocumentError for bad input; anything else is a bug on our side
            log.exception("verifying a report from %s failed", self.peer.subject)
            self._reply(500, "internal error while verifying the message")
            return
        if cfg.signer_must_be_peer:
            assert self.peer_der is not None
            mismatch = signer_is_peer(body, self.peer_der, cfg.max_body_bytes)
            if mismatch is not None:
                log.warning("refused a report from %s: signer is not the TLS client: %s", self.peer.subject,
                            mismatch)
                self._reply(403, f"signer is not the TLS client: {mismatch}", metric="signer-mismatch")
                return
        info = describe_report(rid_root, iodef_root)
        # the IODEF document on its own: the envelope's namespace declarations dropped, content as signed
        standalone = copy.deepcopy(iodef_root)
        etree.cleanup_namespaces(standalone)
        iodef = etree.tostring(standalone, xml_declaration=True, encoding="UTF-8", with_tail=False)
        try:
            new, row = cfg.store.add(body, iodef, info, self.peer, time.time())
        except Exception:
            log.exception("storing a report from %s failed", self.peer.subject)
            self._reply(500, "the report could not be stored; send it again later")
            return
        if new:
            log.info("accepted report %s (name %s, %s, revision %d) from %s, %d bytes, stored as #%d",
                     info.incident_id, info.incident_name, info.kind or info.purpose, info.revision,
                     self.peer.subject, len(body), row)
        else:
            log.info("report %s from %s was already stored as #%d; acknowledged again",
                     info.incident_id, self.peer.subject, row)
        self.server._count_stored(new)
        self._reply(200)


class RidServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with TLS per connection, a connection cap, and per-connection deadlines."""

    daemon_threads = False  # server_close() waits for requests in flight (bounded by the deadline)
    block_on_close = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], config: ReceiverConfig) -> None:
        self.config = config
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._deadlines: dict[int, tuple[socket.socket, float]] = {}
        self._dl_lock = threading.Lock()
        self._stop = threading.Event()
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # an IPv6 literal such as ::1 or ::
        super().__init__(address, _Handler)
        self._reaper = threading.Thread(target=self._reap, name="rid-receiver-reaper", daemon=True)
        self._reaper.start()

    # -- bookkeeping ----------------------------------------------------------------------------
    def _count(self, status: int, metric: str | None = None) -> None:
        if status < 300:
            receiver_metrics().accepted_reports.inc()
        else:
            receiver_metrics().refused_reports.labels(metric or _REASON_CLASS.get(status, "other")).inc()
        with self._stats_lock:
            self.stats[str(status)] += 1
            if metric:
                self.stats[f"refused_{metric}"] += 1

    def _count_stored(self, new: bool) -> None:
        with self._stats_lock:
            self.stats["stored" if new else "duplicate"] += 1

    def _refused(self, reason: str) -> None:
        receiver_metrics().refused_reports.labels(reason).inc()
        with self._stats_lock:
            self.stats[f"refused_{reason}"] += 1

    def _touch(self, sock: socket.socket) -> None:
        with self._dl_lock:
            self._deadlines[id(sock)] = (sock, time.monotonic() + self.config.request_timeout_s)

    def _forget(self, sock: socket.socket) -> None:
        with self._dl_lock:
            self._deadlines.pop(id(sock), None)

    def _reap(self) -> None:
        """Cut connections past their deadline: a blocked recv() returns once the socket is shut."""
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._dl_lock:
                late = [(k, s) for k, (s, d) in self._deadlines.items() if d < now]
                for k, _ in late:
                    del self._deadlines[k]
            for _, sock in late:
                self._refused("timeout")
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # -- connection lifecycle -------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=self.config.slot_wait_s):
            log.warning("all %d connection slots are busy; closing a new connection from %s",
                        self.config.max_connections, client_address[0])
            self._refused("busy")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw: socket.socket = request
        # the reaper enforces the deadline; the socket timeout is only a backstop behind it
        raw.settimeout(self.config.request_timeout_s + 5.0)
        self._touch(raw)
        try:
            # handshake after wrapping, so the reaper can cut a handshake that drips
            tls = self.config.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            self._forget(raw)
            log.info("TLS setup with %s failed: %s", client_address[0], exc)
            self._refused("tls")
            return
        self._forget(raw)
        self._touch(tls)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self._forget(tls)
            log.info("TLS handshake with %s failed: %s", client_address[0],
                     getattr(exc, "reason", None) or exc)
            self._refused("tls")
            tls.close()
            return
        try:
            _Handler(tls, client_address, self)
        except (OSError, ssl.SSLError) as exc:
            log.info("connection from %s ended: %s", client_address[0], exc)
        finally:
            self._forget(tls)
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("unexpected error serving %s", client_address[0])

    def server_close(self) -> None:
        super().server_close()
        self._stop.set()
        self._reaper.join(timeout=2.0)
