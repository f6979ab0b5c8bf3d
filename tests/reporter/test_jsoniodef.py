"""RFC 8727 JSON: the mapping rules, and differential checks against the RFC and the MILE WG converter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from reporter.contacts import ContactTable
from reporter.grouping import group_events, parse_reportable
from reporter.iodef import build_iodef
from reporter.jsoniodef import dumps, to_json
from reporter.settings import ReporterSettings

from .conftest import EVENTS


def collapse_mlstring(doc: Any) -> Any:
    """``{"value": s}`` and ``s`` are the same ML_STRING in RFC 8727 (JSON schema oneOf)."""
    if isinstance(doc, dict):
        if set(doc) == {"value"} and isinstance(doc["value"], str):
            return doc["value"]
        return {k: collapse_mlstring(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [collapse_mlstring(v) for v in doc]
    return doc


def test_rfc7970_minimal_example_gives_the_rfc8727_minimal_example(shared_schemas: Path) -> None:
    ours = to_json(etree.parse(str(shared_schemas / "examples/iodef2/rfc7970-7.1-minimal.xml")).getroot())
    rfc = json.loads((shared_schemas / "examples/json/rfc8727-4.1-minimal.json").read_text())
    # RFC 8727's example writes version "2.0"; the XML attribute is fixed to "2.00" and we keep it
    # (as the MILE WG converter does)
    assert ours.pop("version") == "2.00"
    assert rfc.pop("version") == "2.0"
    assert ours == rfc


@pytest.mark.parametrize(("xml", "js"), [
    ("infiles_iodef-2.0-minimal.xml", "outfiles_iodef-2.0-minimal.json"),
    ("infiles_malware2.xml", "outfiles_malware2.json"),  # IoT malware: System, OperatingSystem, Discovery
])
def test_same_json_as_the_mile_wg_converter(shared_schemas: Path, xml: str, js: str) -> None:
    d = shared_schemas / "examples/public/milewg-iodef-converter"
    ours = to_json(etree.parse(str(d / xml)).getroot())
    theirs = json.loads((d / js).read_text())
    assert collapse_mlstring(ours) == collapse_mlstring(theirs)


def test_mapping_rules_on_a_scan_report(settings: ReporterSettings, contacts: ContactTable) -> None:
    evs = [parse_reportable(e) for e in EVENTS if e["extra.event_id"] in ("scan-zmap-1", "scan-mirai-1")]
    groups, _ = group_events(evs, contacts, settings)
    doc = to_json(build_iodef(groups[0], settings))
    assert doc["version"] == "2.00"
    assert doc["lang"] == "en"
    inc = doc["Incident"][0]
    assert inc["IncidentID"] == {"id": groups[0].incident_id, "name": "telescope.example.net"}
    assert inc["restriction"] == "amber"
    assert inc["Assessment"][0]["Impact"][0]["SystemImpact"]["type"] == "takeover-system"
    ed = inc["EventData"][0]
    assert isinstance(ed["Assessment"], dict)  # EventData has at most one Assessment: not an array
    assert "Flow" not in ed  # RFC 8727 section 3.2: Flow is removed, System moves up
    assert [s["category"] for s in ed["System"]] == ["source", "target"]
    source, target = ed["System"]
    assert source["Node"] == {"Address": [{"value": "192.0.2.10", "category": "ipv4-addr"}]}
    assert source["Counter"][0] == {"value": 1190, "type": "ext-value", "ext-type": "count", "unit": "packet",
                                    "meaning": "packets seen by the telescope"}
    assert target["Service"] == [{"ip-protocol": 6, "Portlist": "23,2323"}, {"ip-protocol": 6, "Port": 443}]
    assert ed["Expectation"] == [{"action": "investigate"}]
    assert ed["AdditionalData"] == [
        {"value": "scan-mirai-1#0", "dtype": "string", "meaning": "event-id"},
        {"value": "scan-zmap-1#1", "dtype": "string", "meaning": "event-id"},
    ]


def test_confidence_element_gets_its_number_in_json(settings: ReporterSettings) -> None:
    s = settings.replace(confidence_element=True)
    groups, _ = group_events([parse_reportable(EVENTS[0])], None, s)
    doc = to_json(build_iodef(groups[0], s))
    assert doc["Incident"][0]["Assessment"][0]["Confidence"] == {"rating": "high", "value": 0.9}


def test_dumps_is_stable_text(settings: ReporterSettings) -> None:
    groups, _ = group_events([parse_reportable(EVENTS[0])], None, settings)
    text = dumps(to_json(build_iodef(groups[0], settings)))
    assert text.endswith(b"}\n")
    assert json.loads(text)["Incident"][0]["IncidentID"]["id"] == groups[0].incident_id
    assert dumps(json.loads(text)) == text


def test_empty_complex_class_is_an_empty_object() -> None:
    doc = etree.fromstring(
        b'<IODEF-Document xmlns="urn:ietf:params:xml:ns:iodef-2.0" version="2.00">'
        b'<Incident purpose="reporting"><EventData><Flow><System><Node>'
        b'<Address category="ipv4-addr">192.0.2.1</Address></Node><Service/>'
        b'</System></Flow><Description/></EventData></Incident></IODEF-Document>')
    ed = to_json(doc)["Incident"][0]["EventData"][0]
    assert ed["System"][0]["Service"] == [{}]
    assert ed["Description"] == [""]


def test_a_repeated_single_class_is_an_error_not_data_loss() -> None:
    bad = etree.fromstring(
        b'<IODEF-Document xmlns="urn:ietf:params:xml:ns:iodef-2.0" version="2.00">'
        b'<Incident purpose="reporting">'
        b'<IncidentID name="a">1</IncidentID><IncidentID name="a">2</IncidentID></Incident></IODEF-Document>')
    with pytest.raises(ValueError, match="IncidentID occurs twice"):
        to_json(bad)
