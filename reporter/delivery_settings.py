"""Settings of delivery (``[delivery]``) and of the receiver (``[receiver]``), each declared once.

TOML tables ``[delivery]`` / ``[receiver]``, environment variables
``DARKNET_IODEF_DELIVERY_<NAME>`` / ``DARKNET_IODEF_RECEIVER_<NAME>``, or the
flags of ``darknet-iodef report --send`` and ``darknet-iodef receiver``
(:func:`darknet_iodef.settings.load`). Checked at start-up: a bad value exits
with the setting's name before anything is sent or served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = ["DeliverySettings", "ReceiverSettings", "parse_listen"]

_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def parse_listen(text: str, setting_name: str = "listen") -> tuple[str, int]:
    """``127.0.0.1:4590`` or ``[::1]:4590`` -> (host, port)."""
    m = _HOSTPORT.match(text.strip())
    port = int(m.group("port")) if m else -1
    if not m or not 0 <= port <= 65535:
        raise ConfigError(setting_name, f"{text!r} is not HOST:PORT")
    return (m.group("v6") or m.group("host")), port


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    outbox: str = setting("outbox.sqlite", "the SQLite outbox file (reports wait here until delivered)")
    tls_cert: str = setting("", "our client certificate (PEM) for RID over HTTPS")
    tls_key: str = setting("", "its private key (PEM, unencrypted)")
    tls_ca: str = setting("", "CA certificates (PEM) that peers' server certificates must chain to")
    tls_allow: tuple[str, ...] = setting(
        (), "peers we send to: SHA-256 certificate fingerprints or subjects (CN=...,O=...)")
    check_hostname: bool = setting(True, "match the peer certificate against the endpoint's host name")
    timeout_s: float = setting(30.0, "socket timeout of one HTTPS or SMTP operation, seconds")
    deadline_s: float = setting(120.0, "longest one delivery attempt may take, seconds")
    backoff_base_s: float = setting(30.0, "first retry delay after a transient failure, seconds")
    backoff_cap_s: float = setting(3600.0, "longest retry delay, seconds")
    give_up_after_s: float = setting(7 * 86400.0, "stop retrying a report this long after it was queued")
    batch: int = setting(100, "reports taken from the outbox per round")
    keep_sent_s: float = setting(
        30 * 86400.0, "keep the bodies of delivered reports this long (rows stay for duplicate checks)")
    dir_root: str = setting("", "root of the per-recipient directories for the 'dir' channel")
    smtp_host: str = setting("localhost", "SMTP server for the 'mail' channel")
    smtp_port: int = setting(25, "SMTP port")
    smtp_starttls: bool = setting(False, "require STARTTLS before sending mail")
    smtp_ca: str = setting("", "CA certificates (PEM) for the SMTP server's certificate (STARTTLS)")
    smtp_user: str = setting("", "SMTP login (empty: none)")
    smtp_password: str = setting("", "SMTP password (prefer the environment variable)")
    mail_from: str = setting("telescope@example.net", "From: address of report mails")

    def __post_init__(self) -> None:
        for name in ("timeout_s", "deadline_s", "backoff_base_s", "backoff_cap_s", "give_up_after_s",
                     "keep_sent_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[delivery] {name}", "must be positive")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError("[delivery] backoff_cap_s", "must not be smaller than backoff_base_s")
        if not 1 <= self.batch <= 10000:
            raise ConfigError("[delivery] batch", f"{self.batch} is outside 1 .. 10000")
        if not 0 < self.smtp_port <= 65535:
            raise ConfigError("[delivery] smtp_port", f"{self.smtp_port} is not a port")


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    listen: str = setting("127.0.0.1:4590", "address and port to serve RID over HTTPS on (RFC 6546: 4590)")
    cert: str = setting("", "our server certificate (PEM)")
    key: str = setting("", "its private key (PEM, unencrypted)")
    client_ca: str = setting("", "CA certificates (PEM) that client certificates must chain to")
    allow: tuple[str, ...] = setting(
        (), "senders allowed: SHA-256 certificate fingerprints or subjects (CN=...,O=...)")
    signer_ca: str = setting("", "CA bundle XML signatures' certificates must chain to (default: client_ca)")
    signer_certs: tuple[str, ...] = setting(
        (), "pinned signer certificates (PEM files); when set, used instead of signer_ca")
    signer_must_be_peer: bool = setting(
        True, "the XML signature must be made with the key of the TLS client's certificate (403 otherwise)")
    store: str = setting("received", "directory of accepted reports (index.sqlite plus the documents)")
    schemas: str = setting("", "directory with rid-with-iodef-2.0.xsd and iodef-2.0.xsd (empty: no XSD)")
    max_body_bytes: int = setting(16 * 1024 * 1024, "largest RID message accepted, bytes")
    request_timeout_s: float = setting(
        30.0, "longest a connection may take for the TLS handshake and one request (slow senders cut)")
    max_connections: int = setting(32, "connections served at once; more wait, then are closed")

    def __post_init__(self) -> None:
        parse_listen(self.listen, "[receiver] listen")
        if not 1024 <= self.max_body_bytes <= 1024 * 1024 * 1024:
            raise ConfigError("[receiver] max_body_bytes", f"{self.max_body_bytes} is outside 1 KiB .. 1 GiB")
        if not 0 < self.request_timeout_s <= 3600:
            raise ConfigError("[receiver] request_timeout_s", "must be in (0, 3600]")
        if not 1 <= self.max_connections <= 4096:
            raise ConfigError("[receiver] max_connections", f"{self.max_connections} is outside 1 .. 4096")
