"""``darknet-iodef receiver``: accept RID reports over HTTPS with mutual TLS (for CSIRTs)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from cryptography import x509

from darknet_iodef import metrics
from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import load, load_toml
from reporter.delivery_settings import ReceiverSettings, parse_listen
from reporter.receiver import ReceiverConfig, RidServer
from reporter.receiver_store import ReceiverStore
from reporter.schemas import Schemas, load_schemas
from reporter.tlsconfig import AllowList, server_context

__all__ = ["build_server", "register"]

log = logging.getLogger(__name__)

EPILOG = """\
The receiver answers POST / with 200 (stored, or already stored), 400 (malformed,
invalid or badly signed message), 403 (certificate not on the allow-list, or a
message signed by another key than the TLS client's), 411, 413
(too large), 415 (not text/xml); GET / gets 405, other paths 404. Accepted reports
are kept under --store: index.sqlite, rid/ (the signed messages as received) and
iodef/ (the IODEF 2.0 documents). SIGTERM or SIGINT stops it after the requests in
flight.

example:
  darknet-iodef receiver --listen 0.0.0.0:4590 --cert server.crt --key server.key \\
      --client-ca peers-ca.pem --allow "CN=rid.telescope.example.net,O=Example" \\
      --store /var/lib/rid --schemas /usr/share/darknet-iodef/schemas
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this subcommand to ``darknet-iodef``."""
    p = subparsers.add_parser(
        "receiver", help="accept RID reports over HTTPS with mutual TLS (for CSIRTs)",
        description="Serve RID over HTTPS (RFC 6546) with mutual TLS: verify the sender's "
                    "certificate and the report's XML signature, validate the document, store it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML file with a [receiver] table")
    p.add_argument("--listen", metavar="HOST:PORT", help="HOST:PORT (default 127.0.0.1:4590)")
    p.add_argument("--cert", metavar="CERT", help="server certificate (PEM)")
    p.add_argument("--key", metavar="KEY", help="server private key (PEM)")
    p.add_argument("--client-ca", dest="client_ca", metavar="CA",
                   help="CA bundle client certificates must chain to")
    p.add_argument("--allow", action="append", metavar="PEER",
                   help="allowed sender: SHA-256 fingerprint or subject (CN=...,O=...); repeat for more")
    p.add_argument("--signer-ca", dest="signer_ca", metavar="CA",
                   help="CA bundle for the XML signature's certificate (default: --client-ca)")
    p.add_argument("--signer-cert", dest="signer_certs", action="append", metavar="CERT",
                   help="pinned signer certificate (PEM); repeat for more; overrides --signer-ca")
    p.add_argument("--signer-must-be-peer", dest="signer_must_be_peer", action=argparse.BooleanOptionalAction,
                   default=None,
                   help="require the XML signature to be made with the TLS client certificate's key "
                        "(default: on; --no-signer-must-be-peer accepts any trusted signer)")
    p.add_argument("--store", metavar="DIR", help="directory for accepted reports (default ./received)")
    p.add_argument("--schemas", metavar="DIR", help="directory with rid-with-iodef-2.0.xsd and iodef-2.0.xsd")
    p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int, metavar="BYTES",
                   help="largest message (16 MiB)")
    p.add_argument("--request-timeout-s", dest="request_timeout_s", type=float, metavar="SECONDS",
                   help="deadline for handshake plus one request (30 s)")
    p.add_argument("--max-connections", dest="max_connections", type=int, metavar="N",
                   help="concurrent connections (32)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics there (default: off)")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> ReceiverSettings:
    table = load_toml(args.config).get("receiver", {}) if args.config else {}
    names = ("listen", "cert", "key", "client_ca", "allow", "signer_ca", "signer_certs",
             "signer_must_be_peer", "store", "schemas", "max_body_bytes", "request_timeout_s",
             "max_connections")
    overrides: dict[str, object] = {n: getattr(args, n, None) for n in names}
    for n in ("allow", "signer_certs"):
        value = getattr(args, n, None)
        if value is not None:
            overrides[n] = tuple(value)
    return load(ReceiverSettings, "receiver", table, overrides=overrides)


def _trusted(s: ReceiverSettings) -> list[x509.Certificate] | Path:
    if s.signer_certs:
        certs: list[x509.Certificate] = []
        for path in s.signer_certs:
            try:
                certs += x509.load_pem_x509_certificates(Path(path).read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigError("[receiver] signer_certs", f"cannot load {path}: {exc}") from None
        return certs
    ca = Path(s.signer_ca or s.client_ca)
    if not ca.is_file():
        raise ConfigError("[receiver] signer_ca", f"{ca} is not a readable file")
    return ca


def build_server(s: ReceiverSettings) -> RidServer:
    """Everything checked and loaded, then bound: a bad setting fails before serving."""
    allow = AllowList.parse(s.allow, "[receiver] allow")
    if not allow:
        raise ConfigError("[receiver] allow", "no sender allowed; RFC 6546 requires an explicit allow-list")
    context = server_context(s.cert or None, s.key or None, s.client_ca or None)
    trusted = _trusted(s)
    schemas: Schemas | None = load_schemas(s.schemas, "[receiver] schemas") if s.schemas else None
    store = ReceiverStore(s.store)
    config = ReceiverConfig(context=context, allow=allow, trusted=trusted, store=store, schemas=schemas,
                            max_body_bytes=s.max_body_bytes, request_timeout_s=s.request_timeout_s,
                            max_connections=s.max_connections, signer_must_be_peer=s.signer_must_be_peer)
    host, port = parse_listen(s.listen, "[receiver] listen")
    try:
        return RidServer((host, port), config)
    except OSError as exc:
        store.close()
        raise ConfigError("[receiver] listen", f"cannot listen on {s.listen}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    server = build_server(_settings(args))
    if getattr(args, "metrics", None):
        try:
            metrics.serve(args.metrics)
        except ConfigError:
            server.server_close()
            server.config.store.close()
            raise
    host, port = server.server_address[:2]

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the requests in flight", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, so it must run in another thread
        threading.Thread(target=server.shutdown, name="rid-receiver-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("RID receiver listening on %s:%s, storing under %s%s", host, port, server.config.store.root,
             "" if server.config.signer_must_be_peer else "; reports signed by any trusted signer accepted")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        server.config.store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("RID receiver stopped; %s", dict(sorted(server.stats.items())) or "no requests")
    return 0
