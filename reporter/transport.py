"""RID over HTTPS (RFC 6546), the sending side: one POST per report, and what its answer means.

Theory of operation (DOMAIN.md section 7; RFC 6546 section 3):

* A RID message is POSTed to "/" of the peer, TCP 4590 unless configured,
  ``Content-Type: text/xml``, over TLS 1.2+ with our client certificate; the
  peer's certificate must chain to the configured CA, match the endpoint's
  host name, and be on the allow-list. Redirects are never followed.
* The answer decides the report's fate, as a pure function
  (:func:`classify_status`): 2xx = delivered (a Report gets 200 with an empty
  body or an Acknowledgement); 4xx = rejected, the message is bad and must not
  be resent as is (the reason is kept for the operator); 5xx, 3xx, timeouts,
  refused or broken connections and TLS failures = transient, resend later
  (sending is idempotent, RFC 6546 section 3).
* The I/O adapter (:class:`RidTransport`) keeps one persistent HTTP/1.1
  connection per peer (RFC 6546: SHOULD use persistent connections); when a
  reused connection turns out to be closed before any answer arrived, the
  POST is repeated once on a fresh connection, which is safe because sending
  is idempotent.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from darknet_iodef.errors import ConfigError
from reporter.tlsconfig import AllowList, peer_identity

__all__ = [
    "DEFAULT_PORT",
    "Endpoint",
    "Outcome",
    "OutcomeKind",
    "RidTransport",
    "classify_status",
    "parse_endpoint",
    "request_headers",
]

log = logging.getLogger(__name__)

#: IANA port for RID over HTTP/TLS (RFC 6546 section 5)
DEFAULT_PORT = 4590
#: a Report's answer is empty or an Acknowledgement; anything larger is read no further
MAX_RESPONSE_BYTES = 256 * 1024
#: how much of a refusal's text is kept as the reason
MAX_REASON_CHARS = 300


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # permanent: do not resend as is
    TRANSIENT = "transient"  # resend later with backoff


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one delivery attempt."""

    kind: OutcomeKind
    reason: str = ""
    status: int | None = None  # the HTTP status (or SMTP reply code) when there was one
    response: bytes = b""  # the peer's answer body (an Acknowledgement), bounded

    @property
    def delivered(self) -> bool:
        return self.kind is OutcomeKind.DELIVERED


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"


def parse_endpoint(url: str, setting: str = "rid_url") -> Endpoint:
    """``https://host[:port][/]`` -> Endpoint; RID lives at "/", so any other path is an error."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(setting, f"{url!r} is not a URL: {exc}") from None
    if parts.scheme != "https":
        raise ConfigError(setting, f"{url!r}: RID over HTTP/TLS needs an https:// URL")
    if not parts.hostname:
        raise ConfigError(setting, f"{url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(setting, f"{url!r}: RID messages are posted to '/' (RFC 6546), not to a path")
    if parts.username or parts.password:
        raise ConfigError(setting, f"{url!r}: no credentials in the URL; RID authenticates with TLS")
    return Endpoint(parts.hostname, port or DEFAULT_PORT)


def request_headers(endpoint: Endpoint, body_length: int) -> dict[str, str]:
    """The headers of a RID POST (RFC 6546: text/xml, the length known up front)."""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return {
        "Host": host if endpoint.port == 443 else f"{host}:{endpoint.port}",
        "Content-Type": "text/xml; charset=utf-8",
        "Content-Length": str(body_length),
        "Accept": "text/xml",
        "User-Agent": "darknet-iodef",
    }


def _printable(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())[:MAX_REASON_CHARS]


def classify_status(status: int, reason_phrase: str = "", body: bytes = b"") -> Outcome:
    """The fate of a report from the HTTP status of its POST (pure)."""
    text = _printable(body.decode("utf-8", "replace")) if body else ""
    why = f"HTTP {status} {_printable(reason_phrase)}".strip()
    if text:
        why = f"{why}: {text}"[:MAX_REASON_CHARS]
    if 200 <= status < 300:
        return Outcome(OutcomeKind.DELIVERED, "", status, body)
    if 400 <= status < 500:
        return Outcome(OutcomeKind.REJECTED, why, status)
    if 300 <= status < 400:
        # RFC 6546: SHOULD NOT follow redirects; the peer is misconfigured or
        # moved, which is not this report's fault, so it stays queued
        return Outcome(OutcomeKind.TRANSIENT, f"{why} (redirects are not followed, RFC 6546)", status)
    return Outcome(OutcomeKind.TRANSIENT, why, status)


#: a kept-alive connection the peer closed shows up as one of these on the next request
_BROKEN = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)


class _PeerNotAllowed(Exception):
    pass


class RidTransport:
    """POSTs RID messages to peers over mutual TLS and classifies the answers.

    ``context`` comes from :func:`reporter.tlsconfig.client_context`;
    ``allow`` names the peers we agree to send to. ``timeout_s`` bounds each
    socket operation and ``deadline_s`` the whole exchange, so a peer that
    drips its answer cannot hold the sender.
    """

    def __init__(self, context: ssl.SSLContext, allow: AllowList, timeout_s: float = 30.0,
                 deadline_s: float = 120.0, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        if not allow:
            raise ConfigError("tls_allow", "the peer allow-list is empty; RFC 6546 requires one")
        self._context = context
        self._allow = allow
        self._timeout = timeout_s
        self._deadline = deadline_s
        self._max_response = max_response_bytes
        self._connections: dict[Endpoint, http.client.HTTPSConnection] = {}

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def __enter__(self) -> RidTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, endpoint: Endpoint) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=self._timeout,
                                           context=self._context)
        self._connections[endpoint] = conn  # visible to the deadline timer from here on
        try:
            conn.connect()
        except BaseException:
            self._connections.pop(endpoint, None)
            conn.close()
            raise
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        if not self._allow.permits_der(der):
            ident = peer_identity(der) if der else None
            self._connections.pop(endpoint, None)
            conn.close()
            who = f"{ident.subject} sha256={ident.fingerprint}" if ident else "no certificate"
            raise _PeerNotAllowed(f"peer certificate is not on the allow-list ({who})")
        return conn

    def _read_body(self, resp: http.client.HTTPResponse, started: float) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while total < self._max_response:
            if time.monotonic() - started > self._deadline:
                raise TimeoutError(f"answer not complete after {self._deadline:g} s")
            # read(), not read1(): it releases the connection once the announced length is read
            chunk = resp.read(min(65536, self._max_response - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def send(self, endpoint: Endpoint, body: bytes) -> Outcome:
        """POST ``body`` to ``endpoint`` once (plus one retry on a stale kept-alive connection).

        A timer shuts the socket when ``deadline_s`` passes, so a peer that drips
        its answer one byte per socket timeout cannot hold the sender for long.
        """
        started = time.monotonic()
        cut = threading.Event()

        def on_deadline() -> None:
            cut.set()
            conn = self._connections.get(endpoint)
            sock = conn.sock if conn is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self._deadline, on_deadline)
        timer.daemon = True
        timer.start()
        try:
            outcome = self._send(endpoint, body, started)
        finally:
            timer.cancel()
        if cut.is_set() and outcome.kind is OutcomeKind.TRANSIENT:
            self._drop(endpoint)
            return Outcome(OutcomeKind.TRANSIENT,
                           f"no complete answer from {endpoint} within {self._deadline:g} s")
        return outcome

    def _send(self, endpoint: Endpoint, body: bytes, started: float) -> Outcome:
        for attempt in (0, 1):
            reused = endpoint in self._connections
            try:
                conn = self._connections.get(endpoint) or self._connect(endpoint)
                self._connections[endpoint] = conn
                conn.request("POST", "/", body=body, headers=request_headers(endpoint, len(body)))
                resp = conn.getresponse()
                answer = self._read_body(resp, started)
                outcome = classify_status(resp.status, resp.reason, answer)
                if resp.will_close or not resp.isclosed():
                    # the peer closes, or left bytes we did not read: do not reuse
                    self._drop(endpoint)
                return outcome
            except _PeerNotAllowed as exc:
                self._drop(endpoint)
                return Outcome(OutcomeKind.TRANSIENT, str(exc))
            except _BROKEN as exc:
                self._drop(endpoint)
                if reused and attempt == 0:
                    log.debug("kept-alive connection to %s was closed (%s); posting again", endpoint, exc)
                    continue
                return Outcome(OutcomeKind.TRANSIENT, f"connection to {endpoint} broken: {exc}")
            except ssl.SSLCertVerificationError as exc:
                self._drop(endpoint)
                return Outcome(OutcomeKind.TRANSIENT, f"TLS: peer certificate refused: {exc.verify_message}")
            except ssl.SSLError as exc:
                self._drop(endpoint)
                return Outcome(OutcomeKind.TRANSIENT, f"TLS with {endpoint} failed: {exc.reason or exc}")
            except TimeoutError as exc:
                self._drop(endpoint)
                return Outcome(OutcomeKind.TRANSIENT, f"timeout talking to {endpoint}: {exc or 'no answer'}")
            except (OSError, http.client.HTTPException) as exc:
                self._drop(endpoint)
                return Outcome(OutcomeKind.TRANSIENT, f"cannot deliver to {endpoint}: {exc!r}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, endpoint: Endpoint) -> None:
        conn = self._connections.pop(endpoint, None)
        if conn is not None:
            conn.close()
