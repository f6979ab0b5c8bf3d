"""Grouping: recipients, periods, stable IncidentIDs, who is never accused, redaction, event checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from lxml import etree

from darknet_iodef.errors import RecordError
from reporter.contacts import ContactTable
from reporter.grouping import group_events, incident_id, parse_reportable
from reporter.iodef import build_iodef, serialize
from reporter.jsoniodef import dumps, to_json
from reporter.redact import TelescopeAddress, telescope_addresses
from reporter.settings import ReporterSettings

from .conftest import EVENTS, scan_event


def parsed(events: list[dict[str, Any]]) -> list:
    return [parse_reportable(e) for e in events]


def test_groups_per_recipient_and_kind(settings: ReporterSettings, contacts: ContactTable) -> None:
    groups, withheld = group_events(parsed(EVENTS), contacts, settings)
    assert [(g.recipient.id, g.kind, [s.ip for s in g.sources]) for g in groups] == [
        ("example-cgn", "scan", ["100.70.0.1"]),
        ("example-hosting", "backscatter", ["198.51.100.50"]),
        ("example-hosting", "scan", ["198.51.100.23"]),
        ("example-isp", "backscatter", ["192.0.2.200"]),
        ("example-isp", "scan", ["192.0.2.10", "192.0.2.77", "2001:db8:1::5"]),
        ("example-transit", "scan", ["198.51.7.9"]),
        ("unassigned/203.0.113.0_24", "scan", ["203.0.113.9"]),
    ]
    assert [(w.reason, w.event["extra.event_id"], w.recipient) for w in withheld] == [
        ("known-scanner", "scan-known-8", None),
        ("spoofed", "scan-spoofed-9", None),
        ("spoofing-summary", "spoof-10", None),
        ("no-contact", "scan-unassigned-12", "unassigned/203.0.113.0_24"),
    ]
    isp_scan = groups[4]
    assert [e.event_id for e in isp_scan.sources[0].events] == ["scan-mirai-1", "scan-zmap-1"]
    assert isp_scan.sources[0].events[1].revision == 1  # the newest revision in the period wins


def test_withheld_events_are_listed_once_with_their_newest_revision(settings: ReporterSettings) -> None:
    known = [scan_event("k", "192.0.2.99", **{"extra.known_scanner": "censys", "extra.revision": r,
                                               "extra.packets": 100 * r}) for r in (2, 1, 3)]
    _, withheld = group_events(parsed(known), None, settings)
    assert [(w.reason, w.event["extra.revision"], w.event["extra.packets"]) for w in withheld] == [
        ("known-scanner", 3, 300)]


def test_known_scanners_and_spoofed_sources_are_never_reported(settings: ReporterSettings,
                                                               contacts: ContactTable) -> None:
    groups, _ = group_events(parsed(EVENTS), contacts, settings)
    everything = b"".join(serialize(build_iodef(g, settings)) for g in groups)
    assert b"192.0.2.99" not in everything  # censys
    assert b"192.0.2.98" not in everything  # spoofed
    assert b"192.0.2.10" in everything


def test_decoy_groups_are_not_reported(settings: ReporterSettings, contacts: ContactTable) -> None:
    decoy = scan_event("d1", "192.0.2.50", **{"destination.port": 22, "extra.confidence": 0.33,
                                               "extra.decoy_group": ["198.51.100.7", "2001:db8::9"]})
    groups, withheld = group_events(parsed([decoy]), contacts, settings)
    assert groups == []
    assert [(w.reason, w.event["source.ip"]) for w in withheld] == [("decoy-group", "192.0.2.50")]
    with pytest.raises(RecordError, match=r"field extra\.decoy_group: "):
        parse_reportable(dict(decoy, **{"extra.decoy_group": ["not-an-ip"]}))
    with pytest.raises(RecordError, match=r"field extra\.decoy_group: "):
        parse_reportable(dict(decoy, **{"extra.decoy_group": "192.0.2.1"}))


def test_incident_id_is_stable_and_distinct(settings: ReporterSettings, contacts: ContactTable) -> None:
    assert incident_id("example-isp", 1_709_251_200_000_000_000, "scan") == \
        "20240301T0000Z-scan-dade214bd6f9853a"
    a, _ = group_events(parsed(EVENTS), contacts, settings)
    b, _ = group_events(parsed(list(reversed(EVENTS))), contacts, settings)
    assert [g.incident_id for g in a] == [g.incident_id for g in b]
    assert len({g.incident_id for g in a}) == len(a)
    docs_a = [serialize(build_iodef(g, settings)) for g in a]
    assert docs_a == [serialize(build_iodef(g, settings)) for g in b]
    # a different period, kind or recipient gives a different id
    assert len({incident_id("r", 0, "scan"), incident_id("r", 3600 * 10**9, "scan"),
                incident_id("r", 0, "backscatter"), incident_id("s", 0, "scan")}) == 4


def test_periods_follow_event_time(settings: ReporterSettings) -> None:
    early = scan_event("a", "192.0.2.1", **{"destination.port": 22})
    late = scan_event("b", "192.0.2.2", **{"destination.port": 22,
                                            "time.observation": "2024-03-01T01:10:00+00:00"})
    hourly, _ = group_events(parsed([early, late]), None, settings)
    assert [(g.recipient.id, g.period_start_ns) for g in hourly] == [
        ("unassigned/192.0.2.0_24", 1_709_251_200 * 10**9),
        ("unassigned/192.0.2.0_24", 1_709_254_800 * 10**9),
    ]
    daily, _ = group_events(parsed([early, late]), None, settings.replace(period_s=86400))
    assert [[s.ip for s in g.sources] for g in daily] == [["192.0.2.1", "192.0.2.2"]]


def test_without_contacts_everything_goes_to_unassigned_networks(settings: ReporterSettings) -> None:
    groups, withheld = group_events(parsed(EVENTS), None, settings)
    assert sorted({g.recipient.id for g in groups}) == [
        "unassigned/100.70.0.0_24", "unassigned/192.0.2.0_24", "unassigned/198.51.100.0_24",
        "unassigned/198.51.7.0_24", "unassigned/2001-db8-1--_48", "unassigned/203.0.113.0_24"]
    assert all(g.recipient.contact is None for g in groups)
    # without a table there is nobody to list as "no contact": only the never-reported ones
    assert [w.reason for w in withheld] == ["known-scanner", "spoofed", "spoofing-summary"]


def test_own_prefix_and_send_off(settings: ReporterSettings, tmp_path) -> None:
    from reporter.contacts import load_contacts

    p = tmp_path / "c.csv"
    p.write_text("network,id,organisation,abuse_email,send\n192.0.2.0/24,quiet,Quiet,a@example.net,false\n")
    inside = scan_event("own", "198.18.7.7", **{"destination.port": 22})
    quiet = scan_event("q", "192.0.2.5", **{"destination.port": 22})
    groups, withheld = group_events(parsed([inside, quiet]), load_contacts(p), settings)
    assert [(g.recipient.id, [s.ip for s in g.sources]) for g in groups] == [("quiet", ["192.0.2.5"])]
    assert [(w.reason, w.recipient) for w in withheld] == [("own-prefix", None), ("send-off", "quiet")]
    from reporter.documents import render

    assert render(groups[0], settings, None).channel == "file"  # written, never sent


def test_backscatter_victim_inside_the_telescope_is_still_a_victim(settings: ReporterSettings) -> None:
    # backscatter sources are real responders; only scans from our own space are spoofed
    ev = dict(next(e for e in EVENTS if e["extra.event_id"] == "bs-tcp-6"), **{"source.ip": "198.18.0.9"})
    groups, withheld = group_events(parsed([ev]), None, settings)
    assert len(groups) == 1 and withheld == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"source.ip": None}, "field source.ip missing"),
    ({"source.ip": "999.1.1.1"}, "field source.ip: '999.1.1.1' is not an IP address"),
    ({"protocol.transport": "carrier-pigeon"}, "field protocol.transport: 'carrier-pigeon' is not a known"),
    ({"extra.ports": [22, 70000]}, "field extra.ports: 70000 is not a port"),
    ({"extra.ports": "22"}, "field extra.ports: '22' is not a list"),
    ({"extra.packets": -1}, "field extra.packets: -1 is out of range"),
    ({"extra.packets": "many"}, "field extra.packets: 'many' is not an integer"),
    ({"extra.confidence": 1.5}, "field extra.confidence: 1.5 is out of range"),
    ({"extra.confidence": True}, "field extra.confidence: True is not a number"),
    ({"extra.spoofed": "no"}, "field extra.spoofed: 'no' is not true or false"),
    ({"destination.port": 65536}, "field destination.port: 65536 is out of range"),
    ({"extra.tool": "zmap\n<evil>"}, "field extra.tool: text too long or with control characters"),
])
def test_bad_fields_are_named(change: dict[str, Any], reason: str) -> None:
    ev = scan_event("x", "192.0.2.1", **{"destination.port": 22})
    for k, v in change.items():
        if v is None:
            del ev[k]
        else:
            ev[k] = v
    with pytest.raises(RecordError) as exc:
        parse_reportable(ev, "events.jsonl", "line 9")
    assert exc.value.position == "line 9"
    assert reason in exc.value.reason


def test_unknown_extra_fields_are_tolerated() -> None:
    ev = scan_event("x", "2001:DB8:0:0::1",
                    **{"extra.new_detector_field": {"a": [1, 2]}, "source.asn": 64500})
    e = parse_reportable(ev)
    assert (e.ip, e.asn, e.protocol) == ("2001:db8::1", 64500, 6)


# ---- redaction ----------------------------------------------------------------------------

def test_telescope_addresses_per_mode(settings: ReporterSettings) -> None:
    s = settings.replace(darknet="198.18.0.0/15,203.0.113.0/24,2001:db8:ffff::/48")
    assert telescope_addresses(s) == (
        TelescopeAddress("ipv4-net", "198.18.0.0/15"), TelescopeAddress("ipv4-net", "203.0.113.0/24"),
        TelescopeAddress("ipv6-net", "2001:db8:ffff::/48"))
    assert telescope_addresses(s.replace(redact=True)) == (
        TelescopeAddress("ipv4-net", "198.18.0.0/15"),  # already shorter than 16 bits: unchanged
        TelescopeAddress("ipv4-net", "203.0.0.0/16"),
        TelescopeAddress("ipv6-net", "2001:db8::/32"))
    assert telescope_addresses(s.replace(redact=True, redact_v4_bits=8)) == (
        TelescopeAddress("ipv4-net", "198.0.0.0/8"), TelescopeAddress("ipv4-net", "203.0.0.0/8"),
        TelescopeAddress("ipv6-net", "2001:db8::/32"))
    assert telescope_addresses(s.replace(redact=True, redact_mode="hide")) == (
        TelescopeAddress("ext-value", "redacted", "darknet-prefix"),)


@pytest.mark.parametrize("mode", ["mask", "hide"])
def test_redacted_documents_do_not_reveal_the_dark_prefix(mode: str, settings: ReporterSettings,
                                                          contacts: ContactTable, schemas) -> None:
    s = settings.replace(darknet="203.0.113.128/25,2001:db8:ffff:1::/64", redact=True, redact_mode=mode)
    groups, _ = group_events(parsed([e for e in EVENTS if e["extra.event_id"] != "scan-unassigned-12"]),
                             contacts, s)
    for g in groups:
        root = build_iodef(g, s)
        blob = serialize(root) + dumps(to_json(root))
        assert b"203.0.113.128" not in blob and b"2001:db8:ffff:1" not in blob
        if mode == "hide":
            assert b"203.0.113" not in blob
        assert schemas.errors(schemas.iodef, root) == []
        assert schemas.errors(schemas.milewg, root) == []
        assert schemas.json_errors(to_json(root)) == []
    masked = serialize(build_iodef(groups[-1], s))
    assert (b"203.0.0.0/16" in masked) == (mode == "mask")


# ---- fuzzing: a poison event is a RecordError, a clean one a valid document --------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
#: values that often pass the checks, so documents get built from odd but valid input
_PLAUSIBLE = (st.none() | st.integers(0, 65535) | st.floats(0, 1) | st.text(max_size=30)
              | st.lists(st.integers(0, 65535), max_size=5)
              | st.lists(st.fixed_dictionaries({"port": st.integers(0, 65535),
                                                "protocol": st.sampled_from(["tcp", "udp", "icmp", "47"])}),
                         max_size=4)
              | st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(0, 9), max_size=3))
_FIELDS = ["source.ip", "source.port", "destination.port", "protocol.transport", "source.asn",
           "extra.ports", "extra.ports_distinct", "extra.kind", "extra.tool", "extra.tool_evidence",
           "extra.confidence", "extra.packets", "extra.bytes", "extra.destinations_distinct",
           "extra.known_scanner", "extra.spoofed", "extra.rate_pps_estimated", "extra.responses",
           "extra.attacker_networks_16", "extra.revision", "extra.event_id", "extra.coverage"]


@hsettings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from([e for e in EVENTS if e["classification.type"] != "masquerade"]),
       changes=st.dictionaries(st.sampled_from(_FIELDS), _PLAUSIBLE | _JSON, min_size=1, max_size=4))
def test_fuzz_events_give_record_errors_or_valid_documents(base: dict[str, Any], changes: dict[str, Any],
                                                          settings: ReporterSettings, schemas) -> None:
    ev = dict(base, **changes)
    try:
        e = parse_reportable(ev, "fuzz", "line 1")
    except RecordError:
        return
    groups, _ = group_events([e], None, settings)
    for g in groups:
        root = build_iodef(g, settings)
        assert schemas.errors(schemas.iodef, etree.fromstring(serialize(root))) == []
        assert schemas.json_errors(to_json(root)) == []
