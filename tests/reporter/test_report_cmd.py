"""``darknet-iodef report`` end to end on the fixture events: files, lists, summary, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from darknet_iodef.cli import main
from reporter.grouping import incident_id
from reporter.rid import open_report
from reporter.schemas import load_schemas

from .conftest import EVENTS, Schemas, events_jsonl
from .pki import Pki

BAD_LINES = b'{"feed.name": "x"}\n\nnot json\n'


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    p = tmp_path / "events.jsonl"
    p.write_bytes(events_jsonl(EVENTS) + BAD_LINES)
    return p


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_report_end_to_end(events_file: Path, contacts_path: Path, tmp_path: Path, rsa_pki: Pki,
                           schemas: Schemas, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["report", "--in", str(events_file), "--contacts", str(contacts_path), "--out", str(out),
            "--darknet", "198.18.0.0/15,2001:db8:ffff::/48", "--redact", "--schemas", str(schemas.root),
            "--sign-key", str(rsa_pki.client.key_path), "--sign-cert", str(rsa_pki.client.cert_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        f"report: 16 events read, 2 invalid; 7 documents (1 unassigned) for 5 recipients; "
        f"not reported: known-scanner 1, spoofed 1, spoofing-summary 1 -> {out}\n")
    assert "skipped event: " + str(events_file) + ": line 15: field extra.event_id missing" in captured.err
    isp_scan = "example-isp/20240301T0000Z-scan-dade214bd6f9853a"
    listing = files(out)
    assert [f for f in listing if f.startswith("example-isp/")] == [
        "example-isp/20240301T0000Z-backscatter-ac4d50e250be02ce.json",
        "example-isp/20240301T0000Z-backscatter-ac4d50e250be02ce.rid.xml",
        "example-isp/20240301T0000Z-backscatter-ac4d50e250be02ce.xml",
        isp_scan + ".json", isp_scan + ".rid.xml", isp_scan + ".xml",
    ]
    assert len([f for f in listing if f.endswith(".rid.xml")]) == 7
    assert [f for f in listing if "/" not in f] == [
        "invalid.jsonl", "not-reported.jsonl", "reports.jsonl", "unassigned.jsonl"]
    assert "unassigned/203.0.113.0_24/20240301T0000Z-scan-010e5f4a9edd0049.xml" in listing

    rows = [json.loads(line) for line in (out / "reports.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["incident_id"] == "20240301T0000Z-scan-dade214bd6f9853a")
    assert row == {
        "recipient": "example-isp", "organisation": "Example ISP", "kind": "scan",
        "revision": 5,  # scan-zmap-1 at revision 1 counts 2, the three other events 1 each
        "incident_id": "20240301T0000Z-scan-dade214bd6f9853a", "period_start": "2024-03-01T00:00:00+00:00",
        "sources": ["192.0.2.10", "192.0.2.77", "2001:db8:1::5"], "channel": "rid",
        "abuse_email": "abuse@isp.example", "rid_url": "https://rid.isp.example:4590/",
        "files": {"json": isp_scan + ".json", "rid": isp_scan + ".rid.xml", "xml": isp_scan + ".xml"},
    }
    assert sorted({r["channel"] for r in rows}) == ["email", "file", "rid"]
    unassigned = [json.loads(line) for line in (out / "unassigned.jsonl").read_text().splitlines()]
    assert [(u["directory"], u["event"]["source.ip"]) for u in unassigned] == [
        ("unassigned/203.0.113.0_24", "203.0.113.9")]
    held = [json.loads(line) for line in (out / "not-reported.jsonl").read_text().splitlines()]
    assert [(h["reason"], h["event"]["extra.event_id"]) for h in held] == [
        ("known-scanner", "scan-known-8"), ("spoofed", "scan-spoofed-9"), ("spoofing-summary", "spoof-10")]
    invalid = [json.loads(line) for line in (out / "invalid.jsonl").read_text().splitlines()]
    assert [(i["position"], i["reason"][:26]) for i in invalid] == [
        ("line 15", "field extra.event_id missi"), ("line 17", "not JSON (Expecting value:")]

    # what was written is what a receiver accepts: signature, RID + IODEF schema, JSON schema
    body = (out / (isp_scan + ".rid.xml")).read_bytes()
    _, iodef = open_report(body, rsa_pki.ca.cert_path, schemas=load_schemas(schemas.root))
    assert iodef.findtext(".//{urn:ietf:params:xml:ns:iodef-2.0}IncidentID") == row["incident_id"]
    for name in listing:
        if name.endswith(".json") and "/" in name:
            assert schemas.json_errors(json.loads((out / name).read_text())) == [], name
        elif name.endswith(".xml") and not name.endswith(".rid.xml"):
            doc = etree.parse(str(out / name)).getroot()
            assert schemas.errors(schemas.iodef, doc) == [], name
            # --redact keeps 16 bits: the /15 is already coarser and stays; the IPv6 /48 becomes a /32
            assert b"198.18.0.0/15" in etree.tostring(doc)
            assert b"2001:db8:ffff::" not in etree.tostring(doc)
    # a second run gives the same documents (RSA PKCS#1 v1.5 signatures are deterministic too)
    again = tmp_path / "again"
    assert main([*argv[:6], str(again), *argv[7:]]) == 0
    assert {f: (out / f).read_bytes() for f in listing} == {f: (again / f).read_bytes() for f in files(again)}


def test_without_contacts_everything_is_under_unassigned(events_file: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", "--in", str(events_file), "--out", str(out), "--format", "xml"]) == 0
    docs = [f for f in files(out) if "/" in f]
    assert docs and all(f.startswith("unassigned/") and f.endswith(".xml") for f in docs)
    assert "unassigned/2001-db8-1--_48/" in " ".join(docs)
    assert (out / "unassigned.jsonl").read_text() == ""  # nothing is "without contact" when no table is given
    assert "8 documents (8 unassigned) for 6 recipients" in capsys.readouterr().out


def test_config_file_and_period(events_file: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "darknet.toml"
    cfg.write_text('[reporter]\noperator_name = "NICT-like telescope"\noperator_email = "ops@tele.example"\n'
                   'incident_name = "tele.example"\nperiod_s = 86400\nformats = ["json"]\n')
    out = tmp_path / "out"
    assert main(["report", "--in", str(events_file), "--out", str(out), "--config", str(cfg)]) == 0
    docs = [f for f in files(out) if "/" in f]
    assert len(docs) == 8 and all(f.endswith(".json") for f in docs)  # formats = ["json"] only
    one = json.loads((out / next(f for f in docs if f.endswith(".json"))).read_text())
    assert one["Incident"][0]["IncidentID"]["name"] == "tele.example"
    assert one["Incident"][0]["Contact"][0]["Email"] == [{"EmailTo": "ops@tele.example"}]


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--sign-key", "k.pem"], 2, "setting --sign-key: give both --sign-key and --sign-cert, or neither"),
    (["--period", "5"], 2, "setting [reporter] period_s: 5 is outside 60 .. 604800 seconds"),
    (["--format", "pdf"], 2, "setting [reporter] formats:"),
    (["--darknet", "10.0.0.1/8"], 2, "setting [reporter] darknet: '10.0.0.1/8' is not a CIDR prefix"),
    (["--contacts", "/nonexistent.csv"], 2, "cannot read /nonexistent.csv"),
])
def test_bad_configuration_exits_2(events_file: Path, tmp_path: Path, extra: list[str], code: int,
                                   message: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["report", "--in", str(events_file), "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_events_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(events_jsonl(EVENTS[:3]))))
    assert main(["report", "--in", "-", "--out", str(tmp_path / "o"), "--format", "xml"]) == 0
    assert capsys.readouterr().out.startswith("report: 3 events read, 0 invalid; 1 documents (1 unassigned)")
    iid = incident_id("unassigned/192.0.2.0_24", 1_709_251_200 * 10**9, "scan")
    assert files(tmp_path / "o") == [
        "invalid.jsonl", "not-reported.jsonl", "reports.jsonl", "unassigned.jsonl",
        f"unassigned/192.0.2.0_24/{iid}.xml"]


def test_missing_events_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--in", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == f"darknet-iodef: {tmp_path / 'none.jsonl'}: cannot read: " \
                                      "No such file or directory\n"


@pytest.mark.shared
def test_real_aggregator_events_make_valid_reports(shared_pcaps: Path, tmp_path: Path, schemas: Schemas,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The contract with the aggregator, end to end: captures -> flows -> events -> documents."""
    # the captures' scanners sit in RFC 1918 space: tell the aggregator they are ours, not spoofed
    internal = "internal_sources=192.168.0.0/16,10.0.0.0/8,172.16.0.0/12"
    cases = [("scan_zmap_tcp80_10k_internet.pcap", "0.0.0.0/1", "zmap"),
             ("scan_masscan_tcp1-600_internet_host.pcap", "123.56.104.218/32", "masscan")]
    for pcap, dark, tool in cases:
        work = tmp_path / tool
        work.mkdir()
        assert main(["sensor", "--pcap", str(shared_pcaps / pcap), "--darknet", dark,
                     "--out", str(work / "flows.bin")]) == 0
        assert main(["aggregate", "--in", str(work / "flows.bin"), "--darknet", dark,
                     "--out", str(work / "events.jsonl"), "--set", internal]) == 0
        assert main(["report", "--in", str(work / "events.jsonl"), "--out", str(work / "out"),
                     "--darknet", dark, "--redact"]) == 0
        summary = capsys.readouterr().out.splitlines()[-1]
        assert summary.startswith("report: 1 events read, 0 invalid; 1 documents")
        (xml,) = [p for p in (work / "out").rglob("*.xml")]
        doc = etree.parse(str(xml)).getroot()
        assert schemas.errors(schemas.iodef, doc) == []
        assert schemas.errors(schemas.milewg, doc) == []
        (js,) = [p for p in (work / "out").rglob("*.json")]
        assert schemas.json_errors(json.loads(js.read_text())) == []
        method = doc.findtext(".//{*}Method/{*}Description")
        assert method.startswith(f"Scanning tool {tool}, identified from packet fingerprints: ")
