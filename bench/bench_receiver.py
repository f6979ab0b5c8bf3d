"""RID delivery on 127.0.0.1: where the time goes, and persistent versus new connections.

Runs, on the same signed reports (distinct IncidentIDs, ECDSA P-256 or RSA-2048
signatures, certificates made for the run), in one process:

* ``verify``: :func:`reporter.rid.open_report` alone (hardened parse, signature,
  IODEF checks) -- the receiver's CPU cost per report;
* ``keep-alive``: the outbox drained through one :class:`RidTransport` to the real
  receiver, one persistent HTTP/1.1 connection (RFC 6546: SHOULD);
* ``new-conn``: the same, but a new TLS connection per report;
* ``outbox``: enqueueing the reports (SQLite, synchronous=FULL) alone;
* ``parallel``: 4 senders at once, each with its own persistent connection;

and prints reports per second and the ratios. Usage::

    python -m bench.bench_receiver [--reports 300] [--key ec|rsa]

No assertion: speed is measured, not asserted (see STYLE.md). The certificates
come from ``tests/reporter/pki.py`` (run from the repository root).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lxml import etree

from reporter.delivery import RidSender, deliver_due, enqueue
from reporter.grouping import group_events, parse_reportable
from reporter.iodef import IODEF_NS, build_iodef
from reporter.outbox import Outbox, Report
from reporter.receiver_store import ReceivedReport, ReceiverStore
from reporter.rid import SigningIdentity, build_report, open_report
from reporter.settings import ReporterSettings
from reporter.tlsconfig import AllowList, PeerIdentity, client_context
from reporter.transport import Endpoint, RidTransport
from tests.reporter.conftest import EVENTS
from tests.reporter.pki import Pki, make_pki
from tests.reporter.rid_peers import receiver_running

SETTINGS = ReporterSettings(operator_name="Bench Telescope", operator_email="telescope@example.net",
                            incident_name="telescope.example.net", darknet="198.18.0.0/15")


def make_reports(pki: Pki, n: int) -> list[Report]:
    groups, _ = group_events([parse_reportable(e) for e in EVENTS], None, SETTINGS)
    root = build_iodef(groups[0], SETTINGS)
    signer = SigningIdentity.load(pki.client.key_path, pki.client.cert_path)
    iid_el = root.find(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}IncidentID")
    assert iid_el is not None
    out = []
    for i in range(n):
        iid = f"bench-{i:06d}"
        iid_el.text = iid
        body = build_report(root, incident_id=iid, incident_name=SETTINGS.incident_name, tlp="amber",
                            signer=signer)
        out.append(Report(iid, "peer", "rid", "", body))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=300)
    ap.add_argument("--key", choices=("ec", "rsa"), default="ec")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    pki = make_pki(tmp / "pki", key_type=args.key)
    reports = make_reports(pki, args.reports)
    size = sum(len(r.body) for r in reports) / len(reports)
    print(f"{len(reports)} signed RID Reports, {args.key} keys, {size:,.0f} bytes each on average")

    t = time.perf_counter()
    for r in reports:
        open_report(r.body, pki.ca.cert_path)
    verify = len(reports) / (time.perf_counter() - t)

    store = ReceiverStore(tmp / "store-only")
    sender = PeerIdentity(pki.client.fingerprint, pki.client.subject)
    info = ReceivedReport("", "telescope.example.net", "Report", "reporting", "takeover-system")
    t = time.perf_counter()
    for r in reports:
        store.add(r.body, r.body, dataclasses.replace(info, incident_id=r.incident_id), sender, 0.0)
    stored = len(reports) / (time.perf_counter() - t)
    store.close()

    rates: dict[str, float] = {}
    for mode in ("keep-alive", "new-conn", ):
        with receiver_running(tmp / f"store-{mode}", pki, [pki.client.subject], max_body_bytes=1 << 24,
                              max_connections=4) as srv:
            url = f"https://127.0.0.1:{srv.server_address[1]}/"
            items = [Report(r.incident_id, r.recipient, "rid", url, r.body) for r in reports]
            with Outbox(tmp / f"outbox-{mode}.sqlite") as ob:
                t = time.perf_counter()
                enqueue(ob, items, 0.0)
                enq = time.perf_counter() - t
                rates["outbox"] = len(items) / enq
                ctx = client_context(pki.client.cert_path, pki.client.key_path, pki.ca.cert_path)
                allow = AllowList.parse([pki.server.fingerprint])
                transport = RidTransport(ctx, allow)
                t = time.perf_counter()
                if mode == "keep-alive":
                    stats = deliver_due(ob, {"rid": RidSender(transport)}, 1.0, limit=len(items))
                else:
                    delivered = 0
                    for _ in items:
                        transport.close()  # a new TLS connection for every report
                        delivered += deliver_due(ob, {"rid": RidSender(transport)}, 1.0, limit=1).delivered
                    stats = None
                rates[mode] = len(items) / (time.perf_counter() - t)
                transport.close()
                assert (stats.delivered if stats else delivered) == len(items)
                assert srv.config.store.count() == len(items)
    # the receiver with 4 senders at once (each its own persistent connection, no outbox)
    with receiver_running(tmp / "store-parallel", pki, [pki.client.subject], max_body_bytes=1 << 24,
                          max_connections=8) as srv:
        ep = Endpoint("127.0.0.1", srv.server_address[1])
        ctx = client_context(pki.client.cert_path, pki.client.key_path, pki.ca.cert_path)
        allow = AllowList.parse([pki.server.fingerprint])

        def sender_thread(part: list[Report]) -> int:
            with RidTransport(ctx, allow) as tr:
                return sum(tr.send(ep, r.body).delivered for r in part)

        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            done = sum(pool.map(sender_thread, [reports[i::4] for i in range(4)]))
        rates["parallel"] = len(reports) / (time.perf_counter() - t)
        assert done == len(reports) == srv.config.store.count()

    print(f"verify only (open_report)       {verify:8.1f} reports/s")
    print(f"receiver storage only (2 fsync'd files + index row) {stored:8.1f} reports/s")
    print(f"outbox enqueue (one commit)     {rates['outbox']:8.1f} reports/s")
    print(f"delivered, persistent connection {rates['keep-alive']:7.1f} reports/s "
          f"(sender + receiver incl. verify and fsync'd storage)")
    print(f"delivered, new TLS connection    {rates['new-conn']:7.1f} reports/s")
    print(f"receiver with 4 senders at once  {rates['parallel']:7.1f} reports/s "
          f"({rates['parallel'] / rates['keep-alive']:.2f}x one sender through its outbox)")
    per = 1000.0 / rates["keep-alive"]
    print(f"ratio persistent / new connection: {rates['keep-alive'] / rates['new-conn']:.2f}x; per report "
          f"{per:.1f} ms end to end, of which verify {1000.0 / verify:.1f} ms and receiver storage "
          f"{1000.0 / stored:.1f} ms (the rest: TLS, HTTP, the outbox's durable record)")


if __name__ == "__main__":
    etree.set_default_parser(etree.XMLParser(resolve_entities=False, no_network=True))
    main()
