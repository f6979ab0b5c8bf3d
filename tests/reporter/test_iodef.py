"""IODEF 2.0 documents: every document type valid against both XSDs and the JSON schema, exact content."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from reporter.contacts import ContactTable
from reporter.grouping import ReportGroup, group_events, parse_reportable
from reporter.iodef import IODEF_NS, build_iodef, confidence_rating, portlist, serialize
from reporter.jsoniodef import to_json
from reporter.settings import ReporterSettings

from .conftest import EVENTS, Schemas

NS = {"i": IODEF_NS}


def by_id(event_id: str, revision: int = 0) -> dict[str, Any]:
    return next(e for e in EVENTS if e["extra.event_id"] == event_id and e["extra.revision"] == revision)


def one_group(events: list[dict[str, Any]], settings: ReporterSettings,
              contacts: ContactTable | None = None) -> ReportGroup:
    groups, withheld = group_events([parse_reportable(e) for e in events], contacts, settings)
    assert len(groups) == 1, (groups, withheld)
    return groups[0]


DOCUMENT_TYPES = {
    "scan-with-tool": ["scan-zmap-1"],
    "scan-without-tool": ["scan-strobe-2"],
    "vertical-scan": ["scan-vert-3"],
    "udp-scan": ["scan-udp-4"],
    "ipv6-scanner": ["scan-v6-5"],
    "backscatter-tcp": ["bs-tcp-6"],
    "backscatter-icmp": ["bs-icmp-7"],
    "multiple-sources": ["scan-zmap-1", "scan-mirai-1", "scan-strobe-2"],
}


@pytest.mark.parametrize("confidence_element", [False, True])
@pytest.mark.parametrize("name", sorted(DOCUMENT_TYPES))
def test_every_document_type_is_valid(name: str, confidence_element: bool, settings: ReporterSettings,
                                      contacts: ContactTable, schemas: Schemas) -> None:
    s = settings.replace(confidence_element=confidence_element)
    group = one_group([by_id(i) for i in DOCUMENT_TYPES[name]], s, contacts)
    root = build_iodef(group, s)
    reparsed = etree.fromstring(serialize(root))  # what a receiver gets, dates on one line included
    assert schemas.errors(schemas.iodef, reparsed) == []
    if not confidence_element:
        # the MILE WG schema wants a number inside <Confidence>; RFC 7970 section 8 forbids content
        assert schemas.errors(schemas.milewg, reparsed) == []
    assert schemas.json_errors(to_json(reparsed)) == []


def test_every_document_type_is_valid_for_xmlschema_too(settings: ReporterSettings, contacts: ContactTable,
                                                         xmlschema_validators: dict[str, Any]) -> None:
    for name, ids in sorted(DOCUMENT_TYPES.items()):
        group = one_group([by_id(i) for i in ids], settings, contacts)
        xml = serialize(build_iodef(group, settings)).decode()
        errors = list(xmlschema_validators["iodef"].iter_errors(xml))
        assert errors == [], (name, errors[:1])


def test_confidence_element_is_exactly_the_schema_disagreement(settings: ReporterSettings,
                                                                schemas: Schemas) -> None:
    s = settings.replace(confidence_element=True)
    root = build_iodef(one_group([by_id("scan-zmap-1")], s), s)
    assert root.find(".//i:Assessment/i:Confidence", NS).get("rating") == "high"
    errors = schemas.errors(schemas.milewg, root)
    assert errors and all("Confidence" in e for e in errors)


def text(root: etree._Element, path: str) -> list[str]:
    return [e.text if isinstance(e, etree._Element) else str(e) for e in root.xpath(path, namespaces=NS)]


def test_scan_with_tool_content(settings: ReporterSettings, contacts: ContactTable) -> None:
    group = one_group([by_id("scan-zmap-1"), by_id("scan-zmap-1", 1)], settings, contacts)
    root = build_iodef(group, settings)
    inc = root.find("i:Incident", NS)
    assert root.get("version") == "2.00"
    assert inc.get("purpose") == "reporting"
    assert inc.get("restriction") == "amber"  # the contact's TLP, set explicitly
    assert text(inc, "i:IncidentID") == [group.incident_id]
    assert text(inc, "i:IncidentID/@name") == ["telescope.example.net"]
    assert text(inc, "i:GenerationTime") == ["2024-03-01T00:20:00+00:00"]  # newest revision's event time
    assert text(inc, "i:StartTime") == ["2024-03-01T00:01:00+00:00"]
    assert text(inc, "i:EndTime") == ["2024-03-01T00:19:00+00:00"]
    assert text(inc, "i:Discovery/@source") == ["nidps"]
    assert text(inc, "i:Contact/@role") == ["creator", "abuse"]
    assert text(inc, "i:Contact/i:Email/i:EmailTo") == ["telescope@example.net", "abuse@isp.example"]
    ed = inc.find("i:EventData", NS)
    assert text(ed, "i:Assessment/@occurrence") == ["potential"]
    assert text(ed, "i:Assessment/i:SystemImpact/@type") == ["takeover-system"]
    assert text(ed, "i:Assessment/i:AdditionalData[@meaning='confidence']") == ["0.95"]
    assert text(ed, "i:Method/i:Description") == [
        "Scanning tool zmap, identified from packet fingerprints: 3/3 sampled probes: IP ID 54321"]
    src = ed.find("i:Flow/i:System[@category='source']", NS)
    assert src.get("spoofed") == "no"
    assert text(src, "i:Node/i:Address") == ["192.0.2.10"]
    assert text(src, "i:Node/i:Address/@category") == ["ipv4-addr"]
    counters = src.findall("i:Counter", NS)
    assert [(c.get("type"), c.get("ext-type"), c.get("unit"), c.text) for c in counters] == [
        ("ext-value", "count", "packet", "1030"),
        ("ext-value", "count", "byte", "41200"),
        ("ext-value", "rate", "packet", "9800"),
    ]
    tgt = ed.find("i:Flow/i:System[@category='target']", NS)
    assert text(tgt, "i:Node/i:Address") == ["198.18.0.0/15"]  # only the IPv4 dark space for an IPv4 source
    assert text(tgt, "i:NodeRole/@category") == ["honeypot"]
    assert text(tgt, "i:Service/@ip-protocol") == ["6"]
    assert text(tgt, "i:Service/i:Port") == ["443"]
    assert text(tgt, "i:Counter[@meaning='distinct dark addresses probed']") == ["1001"]
    assert text(ed, "i:AdditionalData[@meaning='event-id']") == ["scan-zmap-1#1"]
    assert text(ed, "i:Expectation/@action") == ["investigate"]


def test_scan_without_tool_has_no_method_and_a_portlist(settings: ReporterSettings) -> None:
    root = build_iodef(one_group([by_id("scan-strobe-2")], settings), settings)
    assert root.findall(".//i:Method", NS) == []
    # one Service per protocol of the aggregator's port rows
    services = root.findall(".//i:System[@category='target']/i:Service", NS)
    assert [(s.get("ip-protocol"), [c.text for c in s]) for s in services] == [
        ("6", ["22,23,80,443"]), ("17", ["53"])]
    assert text(root, "//i:EventData/i:Description") == [
        "192.0.2.77: strobe scan of TCP ports 22,23,80,443 and UDP port 53, 398 dark addresses"]
    # no contact table: the default TLP and no abuse contact
    assert root.find("i:Incident", NS).get("restriction") == "amber"
    assert text(root, "//i:Incident/i:Contact/@role") == ["creator"]


def test_vertical_scan_lists_the_top_ports_and_says_how_many_more(settings: ReporterSettings) -> None:
    root = build_iodef(one_group([by_id("scan-vert-3")], settings), settings)
    assert text(root, "//i:System[@category='target']/i:Service/i:Portlist") == [
        "21,22,25,80,110,143,443,3389,5900,8080"]
    assert text(root, "//i:EventData/i:Description") == [
        "198.51.100.23: vertical scan of TCP ports 21,22,25,80,110,143,443,3389,5900,8080 (+1860 more), "
        "1 dark address"]


def test_udp_and_ipv6_scans(settings: ReporterSettings) -> None:
    udp = build_iodef(one_group([by_id("scan-udp-4")], settings), settings)
    assert text(udp, "//i:System[@category='target']/i:Service/@ip-protocol") == ["17"]
    assert text(udp, "//i:System[@category='target']/i:Service/i:Port") == ["161"]
    v6 = build_iodef(one_group([by_id("scan-v6-5")], settings), settings)
    assert text(v6, "//i:System[@category='source']/i:Node/i:Address") == ["2001:db8:1::5"]
    assert text(v6, "//i:System[@category='source']/i:Node/i:Address/@category") == ["ipv6-addr"]
    assert text(v6, "//i:System[@category='target']/i:Node/i:Address") == ["2001:db8:ffff::/48"]
    assert text(v6, "//i:System[@category='target']/i:Node/i:Address/@category") == ["ipv6-net"]


def test_backscatter_tcp(settings: ReporterSettings, contacts: ContactTable) -> None:
    root = build_iodef(one_group([by_id("bs-tcp-6")], settings, contacts), settings)
    ed = root.find(".//i:EventData", NS)
    assert text(ed, "i:Assessment/@occurrence") == ["actual"]
    assert text(ed, "i:Assessment/i:SystemImpact/@type") == ["availability-service"]
    assert text(ed, "i:Assessment/i:SystemImpact/@severity") == ["high"]  # 131072 pps >= 100k
    victim = ed.find("i:Flow/i:System[@category='target']", NS)
    assert text(victim, "i:Node/i:Address") == ["192.0.2.200"]
    assert text(victim, "i:Service/@ip-protocol") == ["6"]
    assert text(victim, "i:Service/i:Portlist") == ["80,443"]  # the attacked ports
    assert [c.get("meaning") for c in victim.findall("i:Counter", NS)] == [
        "backscatter packets seen by the telescope", "estimated mean attack rate at the victim",
        "estimated peak attack rate at the victim"]
    assert text(victim, "i:Counter") == ["5400", "117000", "131072"]
    attacker = ed.find("i:Flow/i:System[@category='source']", NS)
    assert attacker.get("spoofed") == "yes"
    assert text(attacker, "i:Node/i:Address") == ["0.0.0.0/0"]
    assert text(attacker, "i:Counter/@ext-unit") == ["ipv4-slash16"]
    assert text(attacker, "i:Counter") == ["2"]
    sensor = ed.find("i:Flow/i:System[@category='sensor']", NS)
    assert text(sensor, "i:NodeRole/@category") == ["honeypot"]
    assert text(ed, "i:Description") == [
        "192.0.2.200: denial-of-service attack seen through backscatter (TCP ports 80,443, "
        "about 131072 packets/s at the victim, replies: 5300 tcp-syn-ack, 100 tcp-rst)"]


def test_backscatter_icmp_has_prototype_and_system_impact(settings: ReporterSettings) -> None:
    root = build_iodef(one_group([by_id("bs-icmp-7")], settings), settings)
    victim = root.find(".//i:System[@category='target']", NS)
    assert text(victim, "i:Service/@ip-protocol") == ["1"]
    assert text(victim, "i:Service/i:ProtoType") == ["0"]
    assert victim.find("i:Service/i:ProtoCode", NS) is None  # only one of the two (schema order differs)
    assert text(root, "//i:EventData/i:Assessment/i:SystemImpact/@type") == ["availability-system"]
    assert text(root, "//i:EventData/i:Assessment/i:SystemImpact/@severity") == ["medium"]  # 1490 pps


def test_multiple_sources_one_eventdata_each(settings: ReporterSettings, contacts: ContactTable) -> None:
    group = one_group([by_id(i) for i in DOCUMENT_TYPES["multiple-sources"]], settings, contacts)
    root = build_iodef(group, settings)
    eds = root.findall(".//i:Incident/i:EventData", NS)
    assert [text(ed, "i:Flow/i:System[@category='source']/i:Node/i:Address") for ed in eds] == [
        ["192.0.2.10"], ["192.0.2.77"]]
    first = eds[0]
    # two events of one source: both services on the target, packets summed, both tools named
    assert text(first, "i:Flow/i:System[@category='target']/i:Service/*") == ["23,2323", "443"]
    packets = "i:Flow/i:System[@category='source']/i:Counter[@ext-type='count'][@unit='packet']"
    assert text(first, packets) == ["572"]
    assert [m.split(",")[0] for m in text(first, "i:Method/i:Description")] == [
        "Scanning tool mirai", "Scanning tool zmap"]
    assert text(first, "i:Assessment/i:SystemImpact/@severity") == ["medium"]  # a Mirai fingerprint
    assert text(root, "//i:Incident/i:Assessment/i:Counter[@unit='host']") == ["2"]


def test_same_events_give_identical_bytes(settings: ReporterSettings, contacts: ContactTable) -> None:
    evs = [by_id(i) for i in DOCUMENT_TYPES["multiple-sources"]]
    a = serialize(build_iodef(one_group(evs, settings, contacts), settings))
    b = serialize(build_iodef(one_group(list(reversed(evs)), settings, contacts), settings))
    assert a == b


def test_dates_are_on_one_line(settings: ReporterSettings) -> None:
    xml = serialize(build_iodef(one_group([by_id("scan-zmap-1")], settings), settings)).decode()
    assert "<GenerationTime>2024-03-01T00:10:00+00:00</GenerationTime>" in xml


@pytest.mark.parametrize(("ports", "text"), [
    ([443], "443"), ([23, 22], "22,23"), ([1, 2, 3, 4, 10, 11, 12, 80], "1-4,10-12,80"), ([5, 5, 6], "5,6"),
])
def test_portlist(ports: list[int], text: str) -> None:
    assert portlist(ports) == text


def test_vertical_scan_of_the_real_aggregator_output_has_ranges_and_no_internet_rate(
        settings: ReporterSettings) -> None:
    ev = dict(by_id("scan-vert-3"), **{
        "destination.port": 1,
        "extra.ports": [{"protocol": "tcp", "port": p, "packets": 1, "destinations": 1}
                        for p in range(1, 11)],
        "extra.ports_distinct": 600, "extra.rate_pps_estimated": 436225729591.8})
    root = build_iodef(one_group([ev], settings), settings)
    assert text(root, "//i:System[@category='target']/i:Service/i:Portlist") == ["1-10"]
    assert text(root, "//i:System[@category='source']/i:Counter/@ext-type") == ["count", "count"]
    assert text(root, "//i:EventData/i:Description") == [
        "198.51.100.23: vertical scan of TCP ports 1,2,3,4,5,6,7,8,9,10 (+590 more), 1 dark address"]


@pytest.mark.parametrize(("value", "rating"), [(0.95, "high"), (0.8, "high"), (0.6, "medium"), (0.1, "low")])
def test_confidence_rating(value: float, rating: str) -> None:
    assert confidence_rating(value) == rating
