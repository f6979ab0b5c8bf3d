"""TLS for RID over HTTPS (RFC 6546): contexts for both ends and the peer allow-list.

Theory of operation (DOMAIN.md section 7; RFC 6546 section 3): both RID peers
authenticate with X.509 certificates and full path validation, TLS 1.1 or
later (we require 1.2, as every maintained stack offers it), and every RID
system MUST support "verification of certificates against an explicit
whitelist of peer certificates". A certificate chaining to the configured CA
is therefore necessary but not sufficient: the leaf must also be on the
allow-list, named either by its SHA-256 fingerprint (a pin, survives nothing
but the exact certificate) or by its subject distinguished name (survives
re-issuance by the same CA). The allow-list decision is a pure function of the
DER bytes, so it is tested without sockets.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from darknet_iodef.errors import ConfigError

__all__ = [
    "AllowList",
    "PeerIdentity",
    "client_context",
    "peer_identity",
    "server_context",
]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is at the other end: the leaf certificate's fingerprint and subject."""

    fingerprint: str  # SHA-256 of the DER certificate, lower-case hex
    subject: str  # RFC 4514 string


def peer_identity(der: bytes) -> PeerIdentity:
    """Fingerprint and subject of a DER certificate (as ``SSLSocket.getpeercert(True)`` gives)."""
    cert = x509.load_der_x509_certificate(der)
    return PeerIdentity(hashlib.sha256(der).hexdigest(), cert.subject.rfc4514_string())


def _fingerprint(entry: str) -> str | None:
    """``sha256:AB:CD...``, ``AB:CD:...`` or plain hex -> lower-case hex; None if not one."""
    text = entry.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    text = text.replace(":", "").replace(" ", "")
    return text if _HEX64.match(text) else None


@dataclass(frozen=True, slots=True)
class AllowList:
    """Peers allowed to talk to us (or that we agree to talk to), by pin or subject.

    An empty list allows no one: RFC 6546 asks for an explicit list, and a
    forgotten setting must not open the door to every holder of a CA-signed
    certificate.
    """

    fingerprints: frozenset[str]
    subjects: frozenset[x509.Name]

    @classmethod
    def parse(cls, entries: Iterable[str], setting: str = "allow") -> AllowList:
        """Entries are SHA-256 fingerprints (hex, colons optional) or subjects (``CN=a,O=b``)."""
        prints: set[str] = set()
        subjects: set[x509.Name] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            pin = _fingerprint(entry)
            if pin is not None:
                prints.add(pin)
                continue
            if "=" not in entry:
                raise ConfigError(setting, f"{entry!r} is neither a SHA-256 fingerprint nor a subject "
                                           "(CN=...)")
            try:
                subjects.add(x509.Name.from_rfc4514_string(entry))
            except ValueError as exc:
                raise ConfigError(setting, f"{entry!r} is not an RFC 4514 subject: {exc}") from None
        return cls(frozenset(prints), frozenset(subjects))

    def __bool__(self) -> bool:
        return bool(self.fingerprints or self.subjects)

    def permits_der(self, der: bytes | None) -> bool:
        """True when the leaf certificate ``der`` is on the list (pure; no chain check here)."""
        if not der:
            return False
        if hashlib.sha256(der).hexdigest() in self.fingerprints:
            return True
        if not self.subjects:
            return False
        try:
            subject = x509.load_der_x509_certificate(der).subject
        except ValueError:
            return False
        return subject in self.subjects


def _check_file(path: Path | str | None, setting: str) -> str:
    if path is None or str(path) == "":
        raise ConfigError(setting, "is required for RID over HTTPS (mutual TLS)")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(setting, f"{p} is not a readable file")
    return str(p)


def _base(ctx: ssl.SSLContext, cert: Path | str | None, key: Path | str | None,
          ca: Path | str | None, names: tuple[str, str, str]) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # no compression (CRIME) and no renegotiation by peers; both are defaults in
    # OpenSSL 3 but stated so an older build does not silently differ
    ctx.options |= ssl.OP_NO_COMPRESSION
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    cert_s, key_s, ca_s = (_check_file(p, n) for p, n in zip((cert, key, ca), names, strict=True))
    try:
        ctx.load_cert_chain(cert_s, key_s)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(names[0], f"cannot load certificate {cert_s} with key {key_s}: {exc}") from None
    try:
        ctx.load_verify_locations(cafile=ca_s)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(names[2], f"cannot load CA certificates from {ca_s}: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Path | str | None, key: Path | str | None, ca: Path | str | None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """Context for sending: our client certificate, the peer verified against ``ca``.

    ``check_hostname`` matches the endpoint's host name against the peer
    certificate's DNS-ID/IP (RFC 6546: verify the peer's reference
    identifier); the allow-list is checked after the handshake.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    return _base(ctx, cert, key, ca, ("tls_cert", "tls_key", "tls_ca"))


def server_context(cert: Path | str | None, key: Path | str | None,
                   client_ca: Path | str | None) -> ssl.SSLContext:
    """Context for the receiver: our server certificate; a client certificate is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return _base(ctx, cert, key, client_ca, ("cert", "key", "client_ca"))
