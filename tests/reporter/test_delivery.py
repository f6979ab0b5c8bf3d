"""Delivery end to end on 127.0.0.1: documents -> outbox -> RID over mutual TLS -> receiver.

Time in the outbox is a fake clock: hours of backoff run in milliseconds, and
the receiver "comes back" when the fake clock passes a given time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from darknet_iodef.events import iso_time
from reporter.contacts import load_contacts
from reporter.delivery import (
    DeliveryStats,
    DirectorySender,
    RidSender,
    deliver_due,
    enqueue,
    outbox_reports,
    run_delivery,
)
from reporter.documents import OutgoingReport, build_documents
from reporter.outbox import BackoffPolicy, Outbox, OutboxItem, Report, State
from reporter.rid import SigningIdentity, open_report
from reporter.schemas import load_schemas
from reporter.settings import ReporterSettings
from reporter.tlsconfig import AllowList, client_context
from reporter.transport import Outcome, OutcomeKind, RidTransport

from .conftest import EVENTS, ports, scan_event
from .pki import Pki, issue, make_pki
from .rid_peers import receiver_running

pytestmark = pytest.mark.timeout(180)

SETTINGS = ReporterSettings(operator_name="Example Telescope", operator_email="telescope@example.net",
                            incident_name="telescope.example.net", darknet="198.18.0.0/15,2001:db8:ffff::/48")
T0 = 1_709_251_200.0  # 2024-03-01T00:00:00Z, the test events' day


def contacts_toml(port: int) -> str:
    rid = "".join(f"""
        [[contact]]
        id = "isp-{tag}"
        organisation = "ISP {tag.upper()}"
        abuse_email = "abuse@{tag}.isp.example"
        rid_url = "https://127.0.0.1:{port}/"
        prefixes = ["{net}"]
        """ for tag, net in (("a", "192.0.2.0/24"), ("b", "2001:db8::/32"), ("c", "203.0.113.0/24"),
                              ("d", "198.51.100.0/24")))
    return textwrap.dedent(rid) + textwrap.dedent("""\
        [[contact]]
        id = "example-transit"
        organisation = "Example Transit"
        abuse_email = "abuse@transit.example"
        format = "json"
        prefixes = ["198.51.0.0/16"]
        """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    """Time for the outbox; ``sleep`` advances it and runs hooks (a receiver coming back)."""

    def __init__(self, start: float) -> None:
        self.t = start
        self.sleeps: list[float] = []
        self.hooks: list[Callable[[float], None]] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert len(self.sleeps) < 1000, "delivery loop does not end"
        self.sleeps.append(seconds)
        self.t += max(seconds, 0.001)
        for hook in self.hooks:
            hook(self.t)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("delivery-pki"))


def documents(tmp_path: Path, pki: Pki, port: int) -> tuple[OutgoingReport, ...]:
    return documents_with(tmp_path, pki, port, EVENTS)


def rid_transport(pki: Pki, client: Any = None, **kw: Any) -> RidTransport:
    ident = client or pki.client
    ctx = client_context(ident.cert_path, ident.key_path, pki.ca.cert_path)
    return RidTransport(ctx, AllowList.parse([pki.server.fingerprint]), **kw)


def test_outbox_reports_per_channel(tmp_path: Path, pki: Pki) -> None:
    docs = documents(tmp_path, pki, 4590)
    entries = outbox_reports(docs, operator="Example Telescope", channels=("rid", "email", "file"))
    by = {(e.recipient, e.channel) for e in entries}
    rid = [e for e in entries if e.channel == "rid"]
    assert {e.recipient for e in rid} == {"isp-a", "isp-b", "isp-c", "isp-d"}
    assert all(e.destination == "https://127.0.0.1:4590/" and e.media_type == "text/xml" for e in rid)
    assert all(e.filename == f"{e.incident_id}.rid.xml" and e.body.startswith(b"<?xml") for e in rid)
    mails = [e for e in entries if e.channel == "email"]
    assert {(e.recipient, e.destination, e.media_type) for e in mails} == {
        ("example-transit", "abuse@transit.example", "application/json")}
    (transit,) = [d for d in docs if d.recipient.id == "example-transit"]
    (mail,) = mails
    assert mail.body == transit.json and mail.filename == f"{transit.incident_id}.json"
    assert "Incident:      " + transit.incident_id in mail.summary
    assert f"Period (UTC):  {iso_time(transit.period_start_ns)}" in mail.summary
    files = {e.recipient for e in entries if e.channel == "file"}
    assert files and all(r.startswith("unassigned/") for r in files)
    assert len(entries) == len(docs) == len({(e.incident_id, e.recipient, e.channel) for e in entries})
    assert len(by) < len(entries)  # several documents (kinds) for one recipient
    # by default only what needs a network goes to the outbox; files are already written
    assert {e.channel for e in outbox_reports(docs)} == {"rid", "email"}


def test_receiver_down_then_back_gets_every_report_exactly_once(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    entries = outbox_reports(documents(tmp_path, pki, port), channels=("rid",))
    assert len(entries) >= 4
    clock = FakeClock(T0)
    back_at = T0 + 2 * 3600.0  # the peer is down for two hours
    with ExitStack() as stack, Outbox(tmp_path / "outbox.sqlite", BackoffPolicy(30, 900, 86400)) as ob, \
            rid_transport(pki, timeout_s=5) as tr:
        servers: list[Any] = []

        def comes_back(now: float) -> None:
            if now >= back_at and not servers:
                servers.append(stack.enter_context(receiver_running(
                    tmp_path / "store", pki, [pki.client.subject], port=port)))

        clock.hooks.append(comes_back)
        assert enqueue(ob, entries, clock()).added == len(entries)
        # re-running the report command enqueues nothing twice
        assert enqueue(ob, entries, clock()).duplicates == len(entries)
        stats = run_delivery(ob, {"rid": RidSender(tr)}, clock=clock, sleep=clock.sleep, max_wait_s=6 * 3600)
        assert servers, "the receiver never came back"
        srv = servers[0]
        assert ob.counts() == {State.QUEUED: 0, State.SENT: len(entries), State.FAILED: 0, State.REJECTED: 0,
                               State.SUPERSEDED: 0}
        assert stats.delivered == len(entries) and stats.rejected == 0 and stats.failed == 0
        assert stats.retrying == stats.attempted - len(entries) > len(entries)
        # every report arrived exactly once, signed, verifiable, after the peer came back
        rows = srv.config.store.reports()
        assert sorted(r.incident_id for r in rows) == sorted(e.incident_id for e in entries)
        assert srv.stats["duplicate"] == 0 and srv.stats["stored"] == len(entries)
        for row in rows:
            _, iodef = open_report((srv.config.store.root / row.rid_path).read_bytes(), pki.ca.cert_path)
            assert iodef.get("version") == "2.00"
        sent = list(ob.items(State.SENT))
        assert all(i.delivered is not None and i.delivered >= back_at for i in sent)
        assert all(i.attempts >= 2 for i in sent)
        # backoff grew while the peer was down: the waits between rounds got longer
        assert max(clock.sleeps) > 10 * min(s for s in clock.sleeps if s > 0)


def test_documents_arrive_schema_valid(tmp_path: Path, pki: Pki, shared_schemas: Path) -> None:
    port = free_port()
    entries = outbox_reports(documents(tmp_path, pki, port), channels=("rid",))
    schemas = load_schemas(shared_schemas)
    with receiver_running(tmp_path / "store", pki, [pki.client.fingerprint], port=port,
                          schemas=schemas) as srv, \
            Outbox(tmp_path / "o.sqlite") as ob, rid_transport(pki) as tr:
        enqueue(ob, entries, T0)
        stats = deliver_due(ob, {"rid": RidSender(tr)}, T0)
        assert stats == DeliveryStats(len(entries), len(entries), 0, 0, 0)
        for row in srv.config.store.reports():
            doc = etree.parse(str(srv.config.store.root / row.rid_path))
            assert schemas.errors(schemas.rid, doc.getroot()) == []
            iodef = etree.parse(str(srv.config.store.root / row.iodef_path))
            assert schemas.errors(schemas.iodef, iodef.getroot()) == []
            # and under the MILE WG corrected schema (DOMAIN.md section 7)
            variant = etree.XMLSchema(etree.parse(
                str(shared_schemas / "variants/iodef-2.0-milewg-jsoniodef.xsd"),
                etree.XMLParser(no_network=True, resolve_entities=False)))
            assert variant.validate(iodef.getroot()), variant.error_log
            # the stored message still verifies: it is the signed message as sent
            _, inner = open_report(doc_bytes := (srv.config.store.root / row.rid_path).read_bytes(),
                                   pki.ca.cert_path)
            assert doc_bytes == next(e.body for e in entries if e.incident_id == row.incident_id)
            assert [(e.tag, e.attrib, e.text) for e in inner.iter()] == [
                (e.tag, e.attrib, e.text) for e in iodef.getroot().iter()]
            assert iodef.getroot().nsmap == {None: "urn:ietf:params:xml:ns:iodef-2.0"}


def test_rejections_are_kept_and_never_retried(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    entries = outbox_reports(documents(tmp_path, pki, port), channels=("rid",))
    other = make_pki(tmp_path / "other")  # the receiver trusts only another signer: every report is 400
    outsider = issue(pki.ca, tmp_path, "outsider", client=True)
    clock = FakeClock(T0)
    with receiver_running(tmp_path / "store", pki, [pki.client.subject, outsider.subject], port=port,
                          trusted=[other.client.cert]) as srv, \
            Outbox(tmp_path / "o.sqlite") as ob, rid_transport(pki) as tr:
        enqueue(ob, entries, clock())
        stats = run_delivery(ob, {"rid": RidSender(tr)}, clock=clock, sleep=clock.sleep, max_wait_s=86400)
        assert stats == DeliveryStats(len(entries), 0, len(entries), 0, 0)
        assert srv.stats["400"] == len(entries)  # one attempt each, however long we wait
        assert ob.counts()[State.REJECTED] == len(entries)
        item = next(ob.items(State.REJECTED))
        assert item.last_status == 400 and "signature refused" in item.last_error
        assert srv.config.store.count() == 0
    # a sender whose certificate is not on the receiver's allow-list: 403, rejected, not retried
    port2 = free_port()
    entries2 = outbox_reports(documents(tmp_path / "b", pki, port2), channels=("rid",))
    with receiver_running(tmp_path / "store2", pki, [pki.client.subject], port=port2) as srv, \
            Outbox(tmp_path / "o2.sqlite") as ob, rid_transport(pki, client=outsider) as tr:
        enqueue(ob, entries2[:1], clock())
        stats = run_delivery(ob, {"rid": RidSender(tr)}, clock=clock, sleep=clock.sleep, max_wait_s=86400)
        assert stats == DeliveryStats(1, 0, 1, 0, 0)
        item = next(ob.items(State.REJECTED))
        assert item.last_error == "HTTP 403 Forbidden: your certificate is not on this receiver's allow-list"
        assert srv.stats["403"] == 1


SENDER_SCRIPT = """
import os, sys
from reporter.delivery import RidSender, deliver_due
from reporter.outbox import Outbox
from reporter.tlsconfig import AllowList, client_context
from reporter.transport import RidTransport
outbox, cert, key, ca, pin, now = sys.argv[1:7]
ob = Outbox(outbox)
tr = RidTransport(client_context(cert, key, ca), AllowList.parse([pin]))
stats = deliver_due(ob, {"rid": RidSender(tr)}, float(now), limit=2)
print(stats.delivered, flush=True)
os._exit(137)  # dies without closing anything, as a killed process would
"""


def test_sender_restart_resumes_from_the_outbox(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    entries = outbox_reports(documents(tmp_path, pki, port), channels=("rid",))
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        enqueue(ob, entries, T0)
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], port=port) as srv:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        proc = subprocess.run(
            [sys.executable, "-c", SENDER_SCRIPT, str(path), str(pki.client.cert_path),
             str(pki.client.key_path), str(pki.ca.cert_path), pki.server.fingerprint, str(T0)],
            capture_output=True, env=env, timeout=60, check=False)
        assert proc.returncode == 137, proc.stderr.decode()
        assert proc.stdout == b"2\n"
        assert srv.config.store.count() == 2
        # a new process opens the same outbox and sends the rest, and nothing twice
        with Outbox(path) as ob, rid_transport(pki) as tr:
            assert ob.counts()[State.SENT] == 2
            stats = run_delivery(ob, {"rid": RidSender(tr)}, clock=lambda: T0 + 60, max_wait_s=0)
            assert stats.delivered == len(entries) - 2
            assert ob.counts()[State.SENT] == len(entries)
        assert srv.stats["duplicate"] == 0
        stored = sorted(r.incident_id for r in srv.config.store.reports())
        assert stored == sorted(e.incident_id for e in entries)


def test_directory_channel_and_a_broken_sender(tmp_path: Path) -> None:
    class Exploding:
        def send(self, item: OutboxItem, now: float) -> Outcome:
            raise RuntimeError("bug")

    spool = tmp_path / "spool"
    with Outbox(tmp_path / "o.sqlite") as ob:
        enqueue(ob, [
            Report("inc-1", "unassigned/203.0.113.0-24", "file", "unassigned/203.0.113.0-24", b"<IODEF/>",
                   "application/xml", "inc-1.xml"),
            Report("inc-2", "evil", "file", "../../etc", b"<IODEF/>", "application/xml", "passwd"),
            Report("inc-3", "isp", "rid", "https://127.0.0.1:1/", b"<RID/>"),
            Report("inc-4", "isp", "pigeon", "coop 7", b"<RID/>"),
        ], T0)
        stats = deliver_due(ob, {"file": DirectorySender(spool), "rid": Exploding()}, T0)
        assert stats == DeliveryStats(4, 1, 1, 2, 0)
        assert (spool / "unassigned/203.0.113.0-24/inc-1.xml").read_bytes() == b"<IODEF/>"
        assert sorted(p.name for p in spool.rglob("*") if p.is_file()) == ["inc-1.xml"]
        errors = {i.report.incident_id: i.last_error for i in ob.items()}
        assert errors["inc-2"] == "unsafe path '../../etc'/'passwd'"
        assert errors["inc-3"] == "internal error: RuntimeError('bug')"
        assert errors["inc-4"] == "no sender configured for channel 'pigeon'"
    assert RidSender(rid_transport_stub()).send(
        OutboxItem(1, Report("x", "r", "rid", "http://plain.example/", b""), State.QUEUED, 0, T0, T0,
                   None, None, None, ""), T0).kind is OutcomeKind.REJECTED


def rid_transport_stub() -> RidTransport:
    class _Never(RidTransport):
        def __init__(self) -> None:
            pass

        def send(self, endpoint: Any, body: bytes) -> Outcome:
            raise AssertionError("a bad URL must not be contacted")

    return _Never()


def test_a_route_that_is_down_costs_one_attempt_per_round(tmp_path: Path) -> None:
    calls: list[str] = []

    class Peers:
        def send(self, item: OutboxItem, now: float) -> Outcome:
            calls.append(item.report.incident_id)
            if "blackhole" in item.report.destination:
                return Outcome(OutcomeKind.TRANSIENT, "timeout talking to https://blackhole.example:4590/")
            if "busy" in item.report.destination:
                return Outcome(OutcomeKind.TRANSIENT, "HTTP 503 Service Unavailable", 503)
            return Outcome(OutcomeKind.DELIVERED, "", 200)

    def rep(n: int, host: str) -> Report:
        return Report(f"inc-{n}", host, "rid", f"https://{host}.example:4590/", b"<RID/>")

    with Outbox(tmp_path / "o.sqlite") as ob:
        enqueue(ob, [rep(1, "blackhole"), rep(2, "up"), rep(3, "blackhole"), rep(4, "busy"), rep(5, "busy"),
                     rep(6, "up"), rep(7, "blackhole")], T0)
        stats = deliver_due(ob, {"rid": Peers()}, T0)
        assert calls == ["inc-1", "inc-2", "inc-4", "inc-6"]
        assert stats == DeliveryStats(7, 2, 0, 5, 0)
        reasons = {i.report.incident_id: i.last_error for i in ob.items(State.QUEUED)}
        assert reasons["inc-3"] == reasons["inc-7"] == "not tried: timeout talking to https://blackhole.example:4590/"
        assert reasons["inc-5"] == "not tried: HTTP 503 Service Unavailable"


LATE = scan_event("scan-late-9", "192.0.2.200", **{"destination.port": 8080,
                                                    "extra.ports": ports("tcp", (8080, 50))})


def documents_with(tmp_path: Path, pki: Pki, port: int,
                   events: list[dict[str, Any]]) -> tuple[OutgoingReport, ...]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "contacts.toml"
    path.write_text(contacts_toml(port))
    signer = SigningIdentity.load(pki.client.key_path, pki.client.cert_path)
    pairs = ((f"line {n}", dict(e)) for n, e in enumerate(events, start=1))
    return build_documents(pairs, load_contacts(path), SETTINGS, signer).reports


def test_a_late_event_reaches_the_recipient_as_one_update(tmp_path: Path, pki: Pki,
                                                          shared_schemas: Path) -> None:
    port = free_port()
    first = outbox_reports(documents_with(tmp_path, pki, port, EVENTS), channels=("rid",))
    later = outbox_reports(documents_with(tmp_path, pki, port, [*EVENTS, LATE]), channels=("rid",))
    schemas = load_schemas(shared_schemas)
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], port=port, schemas=schemas) as srv, \
            Outbox(tmp_path / "o.sqlite") as ob, rid_transport(pki) as tr:
        enqueue(ob, first, T0)
        assert deliver_due(ob, {"rid": RidSender(tr)}, T0).delivered == len(first)
        # the same events again: nothing new; the late event: exactly one update, for isp-a's scans
        again = enqueue(ob, later, T0 + 3600)
        assert (again.added, again.updates, again.duplicates) == (1, 1, len(first) - 1)
        stats = deliver_due(ob, {"rid": RidSender(tr)}, T0 + 3600)
        assert stats == DeliveryStats(1, 1, 0, 0, 0)
        assert srv.stats["200"] == len(first) + 1 and srv.stats["stored"] == len(first) + 1
        rows = srv.config.store.reports()
        (update,) = [e for e in later if e.recipient == "isp-a" and e.revision > next(
            f.revision for f in first if f.incident_id == e.incident_id)]
        versions = [r for r in rows if r.incident_id == update.incident_id]
        assert len(versions) == 2 and versions[0].iodef_sha256 != versions[1].iodef_sha256
        # the receiver's index orders them by the sender's report revision
        assert versions[0].revision < versions[1].revision == update.revision
        iodef = etree.parse(str(srv.config.store.root / versions[1].iodef_path)).getroot()
        ns = "{urn:ietf:params:xml:ns:iodef-2.0}"
        marks = [int(m.text or "") for m in iodef.iter(f"{ns}AdditionalData")
                 if m.get("meaning") == "report-revision"]
        assert marks == [update.revision]
        assert "192.0.2.200" in {a.text for a in iodef.iter(f"{ns}Address")}
        assert schemas.errors(schemas.iodef, iodef) == []
        # a third run over the same input: nothing
        assert enqueue(ob, later, T0 + 7200).added == 0
        assert deliver_due(ob, {"rid": RidSender(tr)}, T0 + 7200).attempted == 0


def test_a_queued_version_is_superseded_by_the_newer_one(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    first = outbox_reports(documents_with(tmp_path, pki, port, EVENTS), channels=("rid",))
    later = outbox_reports(documents_with(tmp_path, pki, port, [*EVENTS, LATE]), channels=("rid",))
    with Outbox(tmp_path / "o.sqlite") as ob:
        enqueue(ob, first, T0)
        with rid_transport(pki, timeout_s=5) as tr:  # nobody listens yet: everything stays queued
            assert deliver_due(ob, {"rid": RidSender(tr)}, T0).retrying == len(first)
        added = enqueue(ob, later, T0 + 60)
        assert (added.added, added.updates, added.superseded) == (1, 1, 1)
        (old,) = list(ob.items(State.SUPERSEDED))
        with receiver_running(tmp_path / "store", pki, [pki.client.subject], port=port) as srv, \
                rid_transport(pki) as tr:
            clock = FakeClock(T0 + 7200)
            stats = run_delivery(ob, {"rid": RidSender(tr)}, clock=clock, sleep=clock.sleep, max_wait_s=0)
            assert stats.delivered == len(first)
            rows = srv.config.store.reports()
        # the recipient got each incident once, in its newest version; the old one is history
        assert sorted(r.incident_id for r in rows) == sorted(e.incident_id for e in first)
        assert ob.counts()[State.SUPERSEDED] == 1 and old.attempts == 1
        (mine,) = [r for r in rows if r.incident_id == old.report.incident_id]
        body = (srv.config.store.root / mine.rid_path).read_bytes()
        assert b"192.0.2.200" in body
