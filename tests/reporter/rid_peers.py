"""Test helpers for delivery and the receiver: real signed reports and a receiver on 127.0.0.1.

Everything here is real: reports are built from the shared test events by the
project's own IODEF and RID builders and signed with certificates from
:mod:`tests.reporter.pki`; the receiver is the production server bound to an
ephemeral loopback port and served from a thread that the context manager
always stops.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from reporter.grouping import group_events, parse_reportable
from reporter.iodef import IODEF_NS, build_iodef
from reporter.receiver import ReceiverConfig, RidServer
from reporter.receiver_store import ReceiverStore
from reporter.rid import SigningIdentity, build_report
from reporter.schemas import Schemas
from reporter.settings import ReporterSettings
from reporter.tlsconfig import AllowList, server_context

from .conftest import EVENTS
from .pki import Identity, Pki

__all__ = ["SignedReport", "receiver_running", "signed_reports"]


@dataclass(frozen=True, slots=True)
class SignedReport:
    incident_id: str
    body: bytes


def signed_reports(settings: ReporterSettings, signer: Identity) -> list[SignedReport]:
    """One signed RID Report per document the shared test events make (at least two)."""
    evs = [parse_reportable(e) for e in EVENTS]
    groups, _ = group_events(evs, None, settings)
    ident = SigningIdentity.load(signer.key_path, signer.cert_path)
    out = []
    for g in groups:
        root = build_iodef(g, settings)
        iid = root.findtext(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}IncidentID") or ""
        body = build_report(root, incident_id=iid, incident_name=settings.incident_name, tlp="amber",
                            signer=ident)
        out.append(SignedReport(iid, body))
    return out


@contextmanager
def receiver_running(store_dir: Path, pki: Pki, allow: Sequence[str], *,
                     trusted: Sequence[x509.Certificate] | Path | None = None,
                     schemas: Schemas | None = None, port: int = 0, max_body_bytes: int = 1 << 20,
                     request_timeout_s: float = 5.0, max_connections: int = 8,
                     signer_must_be_peer: bool = True) -> Iterator[RidServer]:
    """The production receiver on 127.0.0.1 in a thread; stopped and closed on exit."""
    store = ReceiverStore(store_dir)
    config = ReceiverConfig(
        context=server_context(pki.server.cert_path, pki.server.key_path, pki.ca.cert_path),
        allow=AllowList.parse(allow), trusted=pki.ca.cert_path if trusted is None else trusted,
        store=store, schemas=schemas, max_body_bytes=max_body_bytes,
        request_timeout_s=request_timeout_s, max_connections=max_connections, slot_wait_s=1.0,
        signer_must_be_peer=signer_must_be_peer)
    server = RidServer(("127.0.0.1", port), config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        store.close()
