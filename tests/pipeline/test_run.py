"""``darknet-iodef run``: the Quickstart command, byte for byte the chain sensor -> aggregate -> report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from darknet_iodef.cli import main
from tests.pipeline.helpers import SAMPLE_DARKNET, run_sample


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    d = tmp_path_factory.mktemp("chain")
    assert (
        main(
            [
                "sensor",
                "--pcap",
                str(repo_root / "pcaps/sample-darknet.pcap"),
                "--darknet",
                SAMPLE_DARKNET,
                "--name",
                "s1",
                "--out",
                str(d / "flows.bin"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "aggregate",
                "--in",
                str(d / "flows.bin"),
                "--darknet",
                SAMPLE_DARKNET,
                "--out",
                str(d / "events.jsonl"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                "--in",
                str(d / "events.jsonl"),
                "--darknet",
                SAMPLE_DARKNET,
                "--out",
                str(d / "reports"),
            ]
        )
        == 0
    )
    return d


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_run_writes_what_the_chain_writes(reference: Path, chain: Path) -> None:
    assert (reference / "events.jsonl").read_bytes() == (chain / "events.jsonl").read_bytes()
    assert _tree(reference / "incidents") == _tree(chain / "reports")
    assert len(_tree(reference / "incidents")) > 40


def test_without_contacts_documents_go_per_source_network(reference: Path) -> None:
    rows = [json.loads(x) for x in (reference / "incidents/reports.jsonl").read_text().splitlines()]
    assert rows
    for r in rows:
        assert r["recipient"].startswith("unassigned/") and r["organisation"] is None
        network = r["recipient"].removeprefix("unassigned/")
        if all(":" not in ip for ip in r["sources"]):
            assert network.endswith("_24")  # IPv4 sources grouped per /24
        assert sorted(r["files"]) == ["json", "xml"]
        for f in r["files"].values():
            path = reference / "incidents" / f
            assert path.is_file() and path.parts[-3:-1] == ("unassigned", network)


def test_summary_counts_what_the_files_hold(reference: Path) -> None:
    s = json.loads((reference / "summary.json").read_text())
    assert s["sensor"]["packets"] == 40_000
    assert s["sensor"]["dark_packets"] == 39_950
    assert s["sensor"]["dropped_packets"] == {"not_ip": 20, "outside": 30}
    assert s["sensor"]["intervals"] == 6
    newest: dict[str, dict] = {}
    for line in (reference / "events.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["extra.revision"] >= newest.get(ev["extra.event_id"], {}).get("extra.revision", 0):
            newest[ev["extra.event_id"]] = ev
    scans = [e for e in newest.values() if e["classification.type"] == "scanner"]
    tools = Counter(e.get("extra.tool") or "unidentified" for e in scans)
    assert s["events"]["scans"] == len(scans) > 0
    assert s["events"]["scans_by_tool"] == dict(tools)
    victims = {e["source.ip"] for e in newest.values() if e["classification.type"] == "ddos"}
    assert s["events"]["victims"] == len(victims) > 0
    spoof = [e for e in newest.values() if e["classification.type"] == "masquerade"]
    assert s["events"]["spoofed_packets"] == sum(e["extra.packets"] for e in spoof) > 0
    rows = (reference / "incidents/reports.jsonl").read_text().splitlines()
    assert s["reports"]["documents"] == len(rows) == s["reports"]["unassigned"]


def test_run_prints_a_short_summary(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_sample(repo_root, tmp_path / "o") == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == [
        "packets",
        "scans",
        "victims",
        "spoofing",
        "reports",
        "written",
    ]
    assert out[0].startswith("packets   40,000 read, 39,950 to the darknet")


def test_run_needs_captures_or_an_interface(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--darknet", SAMPLE_DARKNET, "--out", str(tmp_path / "o")]) == 2
    assert "give capture files or --interface" in capsys.readouterr().err


def test_a_missing_capture_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", str(tmp_path / "nope.pcap"), "--darknet", SAMPLE_DARKNET, "--out", str(tmp_path / "o")])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.pcap" in err[0] and "cannot open" in err[0]


def test_run_counts_in_the_prometheus_metrics(tmp_path: Path, repo_root: Path) -> None:
    from prometheus_client import REGISTRY

    names = {
        "packets": ("darknet_sensor_received_packets_total", {}),
        "not_ip": ("darknet_sensor_dropped_packets_total", {"reason": "not_ip"}),
        "flows": ("darknet_aggregator_received_flows_total", {}),
        "documents": ("darknet_reporter_written_reports_total", {"format": "xml"}),
        "consumed": ("darknet_aggregator_consumed_messages_total", {"topic": "darknet.flows"}),
    }

    def values() -> dict[str, float]:
        return {k: REGISTRY.get_sample_value(n, labels) or 0.0 for k, (n, labels) in names.items()}

    before = values()
    assert run_sample(repo_root, tmp_path / "o") == 0
    after = values()
    delta = {k: after[k] - before[k] for k in names}
    summary = json.loads((tmp_path / "o/summary.json").read_text())
    assert delta["packets"] == 40_000 and delta["not_ip"] == 20
    assert delta["flows"] == summary["sensor"]["flows"]
    assert delta["documents"] == summary["reports"]["documents"]
    assert delta["consumed"] == summary["bus"]["flows_messages"]
