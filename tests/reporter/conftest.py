"""Reporter fixtures: a realistic set of detection events, a contact table, schemas, signing keys.

The events are written by hand in the shape of ``darknet_iodef.events`` (IntelMQ
field names) with values typical of a NICTER-class telescope: a ZMap sweep of
TCP/443, a Mirai-like telnet scan, a vertical and a strobe scan, a UDP scan, an
IPv6 scanner, TCP and ICMP backscatter, a known research scanner, a spoofed
source and a spoofing summary. Addresses are documentation ranges (RFC 5737,
RFC 3849); the telescope is 198.18.0.0/15 (RFC 2544 benchmarking space).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from reporter.contacts import ContactTable, load_contacts
from reporter.settings import ReporterSettings

from .pki import Identity, Pki, make_ca, make_pki

T0 = "2024-03-01T00:"  # every event is inside the hour 2024-03-01T00:00Z


def _base(kind: str, event_id: str, start: str, end: str, obs: str, **extra: Any) -> dict[str, Any]:
    tax = {
        "scan": ("information-gathering", "scanner", "scan"),
        "backscatter": ("availability", "ddos", "backscatter"),
        "spoofing": ("fraud", "masquerade", "ip-spoofer"),
    }[kind]
    ev: dict[str, Any] = {
        "classification.taxonomy": tax[0],
        "classification.type": tax[1],
        "classification.identifier": tax[2],
        "feed.name": "darknet-iodef",
        "extra.event_id": event_id,
        "extra.revision": 0,
        "time.source": T0 + start,
        "extra.time_end": T0 + end,
        "time.observation": T0 + obs,
    }
    ev.update(extra)
    return ev


def ports(proto: str, *rows: tuple[int, int]) -> list[dict[str, Any]]:
    """The aggregator's ``extra.ports`` rows: port, protocol, packets, destinations."""
    return [{"protocol": proto, "port": p, "packets": n, "destinations": n} for p, n in rows]


def scan_event(event_id: str, ip: str, **extra: Any) -> dict[str, Any]:
    """A scan in the shape ``aggregator/scan.py`` emits (one event per source)."""
    ev = _base("scan", event_id, "01:00+00:00", "09:00+00:00", "10:00+00:00",
               **{"source.ip": ip, "protocol.transport": "tcp", "extra.packets": 412,
                  "extra.bytes": 16480, "extra.destinations_distinct": 398,
                  "extra.destinations_capped": False,
                  "extra.ports_capped": False, "extra.confidence": 0.9, "extra.tool": None,
                  "extra.tool_evidence": {}, "extra.tool_samples": 0, "extra.known_scanner": None,
                  "extra.state": "ongoing", "extra.coverage": 0.0021})
    ev.update(extra)
    return ev


ZMAP_EVIDENCE = {"zmap": "3/3 sampled probes: IP ID 54321", "masscan": "1/3 sampled probes: IP ID check"}

EVENTS: list[dict[str, Any]] = [
    # ZMap horizontal sweep of 443 from a host of Example ISP (two revisions: the newest wins)
    scan_event("scan-zmap-1", "192.0.2.10", **{
        "classification.identifier": "zmap", "destination.port": 443, "extra.ports": ports("tcp", (443, 412)),
        "extra.ports_distinct": 1, "extra.kind": "horizontal", "extra.tool": "zmap",
        "extra.tool_evidence": ZMAP_EVIDENCE, "extra.tool_samples": 3, "extra.rate_pps_estimated": 9120.5}),
    scan_event("scan-zmap-1", "192.0.2.10", **{
        "extra.revision": 1, "time.observation": T0 + "20:00+00:00", "extra.time_end": T0 + "19:00+00:00",
        "classification.identifier": "zmap", "destination.port": 443,
        "extra.ports": ports("tcp", (443, 1030)),
        "extra.ports_distinct": 1, "extra.kind": "horizontal", "extra.tool": "zmap", "extra.packets": 1030,
        "extra.bytes": 41200, "extra.destinations_distinct": 1001, "extra.confidence": 0.95,
        "extra.tool_evidence": ZMAP_EVIDENCE, "extra.tool_samples": 3, "extra.coverage": 0.0052,
        "extra.rate_pps_estimated": 9800.0}),
    # the same host also probes telnet like Mirai: a second event of the same source
    scan_event("scan-mirai-1", "192.0.2.10", **{
        "classification.identifier": "mirai", "destination.port": 23,
        "extra.ports": ports("tcp", (23, 144), (2323, 16)), "extra.ports_distinct": 2, "extra.kind": "strobe",
        "extra.tool": "mirai", "extra.tool_evidence": {"mirai": "3/3 sampled probes: TCP seq == destination"},
        "extra.packets": 160}),
    # strobe scan without a tool fingerprint, TCP and one UDP port
    scan_event("scan-strobe-2", "192.0.2.77", **{
        "destination.port": 22,
        "extra.ports": ports("tcp", (22, 90), (23, 80), (80, 70), (443, 60)) + ports("udp", (53, 12)),
        "extra.ports_distinct": 5, "extra.kind": "strobe", "extra.confidence": 0.6}),
    # vertical scan from Example Hosting (nested inside Example Transit's /16); 1870 ports, top 10 listed
    scan_event("scan-vert-3", "198.51.100.23", **{
        "destination.port": 21,
        "extra.ports": ports("tcp", *[(p, 1) for p in (21, 22, 25, 80, 110, 143, 443, 3389, 5900, 8080)]),
        "extra.ports_distinct": 1870, "extra.ports_capped": False, "extra.kind": "vertical",
        "extra.destinations_distinct": 1, "extra.packets": 1870}),
    # UDP scan, written with the older field names (plain port list): the reporter reads both
    scan_event("scan-udp-4", "198.51.7.9", **{
        "protocol.transport": "udp", "destination.port": 161, "extra.ports": [161],
        "extra.port_count": 1, "extra.kind": "horizontal", "extra.confidence": 0.8,
        "extra.destinations_distinct": None, "extra.distinct_destinations": 398}),
    # IPv6 scanner (IPv6 telescopes see few, but they exist)
    scan_event("scan-v6-5", "2001:db8:1::5", **{
        "destination.port": 22, "extra.ports": ports("tcp", (22, 412)), "extra.kind": "horizontal",
        "extra.destinations_capped": True}),
    # backscatter (aggregator/backscatter.py shape): SYN-ACKs from a web server under a SYN flood
    _base("backscatter", "bs-tcp-6", "02:00+00:00", "12:00+00:00", "13:00+00:00", **{
        "source.ip": "192.0.2.200", "source.port": 80, "protocol.transport": "tcp",
        "extra.packets": 5400, "extra.bytes": 216000, "extra.peak_window_packets": 640,
        "extra.attacker_networks_16": 2, "extra.rate_pps_estimated": 117000.0,
        "extra.peak_rate_pps_estimated": 131072.0, "extra.responses": {"tcp-syn-ack": 5300, "tcp-rst": 100},
        "extra.ports_distinct": 2,
        "extra.ports": [{"port": 80, "packets": 5000}, {"port": 443, "packets": 400}],
        "extra.confidence": 0.99, "extra.state": "ended"}),
    # backscatter: ICMP echo replies from a host under a ping flood (older field names)
    _base("backscatter", "bs-icmp-7", "03:00+00:00", "14:00+00:00", "15:00+00:00", **{
        "source.ip": "198.51.100.50", "protocol.transport": "icmp",
        "extra.responses": {"icmp-echo-reply": 61},
        "extra.packets": 61, "extra.estimated_rate_pps": 1490.2, "extra.attacker_slash16s": 2}),
    # a known research scanner: listed for the operator, not reported
    scan_event("scan-known-8", "192.0.2.99", **{
        "destination.port": 80, "extra.ports": ports("tcp", (80, 412)), "extra.known_scanner": "censys"}),
    # a spoofed source: never accuse the apparent owner
    scan_event("scan-spoofed-9", "192.0.2.98", **{
        "destination.port": 445, "extra.ports": ports("tcp", (445, 412)), "extra.spoofed": True,
        "extra.spoofing_reasons": ["ttl-inconsistent"]}),
    # a spoofing summary (aggregator/spoofing.py shape) has no source address at all
    _base("spoofing", "spoof-10", "00:00+00:00", "30:00+00:00", "31:00+00:00", **{
        "extra.ingress": "upstream-1", "extra.packets": 800, "extra.sources_distinct": 790,
        "extra.reasons": ["bogon", "ttl-inconsistent"], "extra.protocols": ["tcp"], "extra.confidence": 0.9}),
    # an address with no prefix in the table but an ASN an enrichment step added
    scan_event("scan-asn-11", "100.70.0.1", **{"source.asn": 64501, "destination.port": 80,
                                                 "extra.ports": ports("tcp", (80, 412)),
                                                 "extra.some_new_field": 1}),
    # nobody's network: listed and written under unassigned/
    scan_event("scan-unassigned-12", "203.0.113.9", **{"destination.port": 3389,
                                                          "extra.ports": ports("tcp", (3389, 412))}),
]

CONTACTS_TOML = """\
[[contact]]
id = "example-isp"
organisation = "Example ISP"
abuse_email = "abuse@isp.example"
rid_url = "https://rid.isp.example:4590/"
tlp = "amber"
prefixes = ["192.0.2.0/24", "2001:db8::/32"]

[[contact]]
id = "example-transit"
organisation = "Example Transit"
abuse_email = "abuse@transit.example"
format = "json"
tlp = "green"
prefixes = ["198.51.0.0/16"]

[[contact]]
id = "example-hosting"
organisation = "Example Hosting"
abuse_email = "abuse@hosting.example"
tlp = "red"
prefixes = ["198.51.100.0/24"]

[[contact]]
id = "example-cgn"
organisation = "Example Mobile"
abuse_email = "abuse@mobile.example"
asns = [64501]
"""


def events_jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in events)


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return [dict(e) for e in EVENTS]


@pytest.fixture
def settings() -> ReporterSettings:
    return ReporterSettings(operator_name="Example Telescope", operator_email="telescope@example.net",
                            incident_name="telescope.example.net", darknet="198.18.0.0/15,2001:db8:ffff::/48")


@pytest.fixture
def contacts_path(tmp_path: Path) -> Path:
    p = tmp_path / "contacts.toml"
    p.write_text(CONTACTS_TOML)
    return p


@pytest.fixture
def contacts(contacts_path: Path) -> ContactTable:
    return load_contacts(contacts_path)


class Schemas:
    """The official schemas compiled once per session (no network, no entities)."""

    def __init__(self, root: Path) -> None:
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        self.root = root
        self.iodef = etree.XMLSchema(etree.parse(str(root / "iodef-2.0.xsd"), parser))
        variant = root / "variants/iodef-2.0-milewg-jsoniodef.xsd"
        self.milewg = etree.XMLSchema(etree.parse(str(variant), parser))
        self.rid = etree.XMLSchema(etree.parse(str(root / "rid-with-iodef-2.0.xsd"), parser))
        self.json = json.loads((root / "iodef-2.0.schema.json").read_text())

    def errors(self, schema: etree.XMLSchema, doc: etree._Element) -> list[str]:
        ok = schema.validate(doc)
        return [] if ok else [f"{e.line}: {e.message}" for e in schema.error_log]

    def json_errors(self, doc: Any) -> list[str]:
        import jsonschema

        # format checks on: every DATETIME must be RFC 3339 (the schema says "format": "date-time")
        v = jsonschema.Draft4Validator(self.json, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        return [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(doc)]


@pytest.fixture(scope="session")
def schemas(shared_schemas: Path) -> Schemas:
    return Schemas(shared_schemas)


@pytest.fixture(scope="session")
def xmlschema_validators(shared_schemas: Path) -> dict[str, Any]:
    """The same schemas compiled by ``xmlschema`` (pure Python, follows XSD 1.0 to the letter):
    an independent second validator next to libxml2. Local files only."""
    import xmlschema

    return {name: xmlschema.XMLSchema(str(shared_schemas / f), allow="local")
            for name, f in (("iodef", "iodef-2.0.xsd"), ("rid", "rid-with-iodef-2.0.xsd"))}


@pytest.fixture(scope="session")
def signer_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA + certificates (ECDSA P-256); the client certificate signs RID messages."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki-rsa"), key_type="rsa")


@pytest.fixture(scope="session")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return make_ca(tmp_path_factory.mktemp("rogue"), "Rogue CA")
