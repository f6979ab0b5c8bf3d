"""Ground truth: the bench generator's planted entities, through the real sensor and aggregator.

The thresholds are set to the ones the labels' verdicts use (``labels["rules"]``:
Moore's 25 packets / 60 s / 30 in a sliding 60 s window, and >= 100 distinct
dark destinations for a scan) rather than the defaults scaled for the /16.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from darknet_iodef.cli import main
from darknet_iodef.events import decode_event

PROTO = {"icmpv6": "ipv6-icmp"}
REASON = {"bogon": "bogon", "dark_source": "inside-darknet", "random": "ttl-200"}


def detect(tmp_path: Path, pcap: Path, labels: dict[str, Any]) -> list[dict[str, Any]]:
    dark = ",".join(labels["darknet"])
    flows = tmp_path / "x.flows"
    assert main(["sensor", "--pcap", str(pcap), "--darknet", dark, "--out", str(flows)]) == 0
    out = tmp_path / "x.jsonl"
    rules = labels["rules"]
    rc = main(
        [
            "aggregate",
            "--in",
            str(flows),
            "--darknet",
            dark,
            "--out",
            str(out),
            "--set",
            f"bs_min_packets={rules['backscatter']['min_packets']}",
            "--set",
            f"bs_min_window_packets={rules['backscatter']['min_peak_packets']}",
            "--set",
            f"bs_min_duration_s={rules['backscatter']['min_duration_s']}",
            "--set",
            f"bs_idle_s={rules['backscatter']['idle_timeout_s']}",
            "--set",
            f"scan_min_destinations={rules['scan_min_distinct_dsts']}",
        ]
    )
    assert rc == 0
    latest: dict[str, dict[str, Any]] = {}
    for line in out.read_bytes().splitlines():
        ev = decode_event(line)
        latest[ev["extra.event_id"]] = ev  # the last revision of each incident
    return list(latest.values())


def link_name(link: dict[str, Any]) -> str:
    return f"vlan:{link['vlan'][0]}" if link["vlan"] else f"mac:{link['src_mac']}"


def check(events: list[dict[str, Any]], labels: dict[str, Any]) -> None:
    scans = {e["source.ip"]: e for e in events if e["classification.taxonomy"] == "information-gathering"}
    victims = {
        (e["source.ip"], e["protocol.transport"]): e
        for e in events
        if e["classification.identifier"] == "backscatter"
    }
    spoofing = [e for e in events if e["classification.identifier"] == "ip-spoofer"]
    ents = labels["entities"]
    links = {ln["name"]: link_name(ln) for ln in labels["links"]}

    planted_scanners = {e["src"]: e for e in ents if e["role"] == "scanner"}
    for ent in planted_scanners.values():
        if not (ent["expected_scan_100_dsts"] or ent["kind"] == "vertical"):
            continue
        ev = scans.get(ent["src"])
        assert ev is not None, f"{ent['id']} ({ent['tool']} {ent['kind']}) not found"
        assert ev["extra.kind"] == ent["kind"], ent["id"]
        assert (ev["extra.tool"] or "generic") == ent["tool"], ent["id"]
    # nothing reported that was not planted: every scan event is a planted scanner,
    # so no spoofed or background source is accused
    assert set(scans) <= set(planted_scanners)

    planted_vectors = set()
    for ent in (e for e in ents if e["role"] == "backscatter"):
        key = (ent["victim"], PROTO.get(ent["protocol"], ent["protocol"]))
        planted_vectors.add(key)
        assert (key in victims) == ent["expected_pass"], (ent["id"], ent["designed"])
    assert set(victims) <= planted_vectors

    spoof_links = {}
    for ent in (e for e in ents if e["role"] == "spoofed"):
        for name in ent["links"]:
            spoof_links.setdefault(links[name], set()).add(REASON[ent["reason"]])
    for link, reasons in spoof_links.items():
        seen = set().union(*(e["extra.reasons"] for e in spoofing if e["extra.ingress"] == link))
        assert reasons <= seen, link
    for e in spoofing:
        assert "source.ip" not in e
        # elsewhere only corsaro3's fragment rule fires (the planted fragmented background)
        assert e["extra.ingress"] in spoof_links or set(e["extra.reasons"]) == {"fragment"}, e


def test_sample_capture(tmp_path: Path, repo_root: Path) -> None:
    pcap = repo_root / "pcaps/sample-darknet.pcap"
    if not pcap.exists():
        pytest.skip("pcaps/sample-darknet.pcap is not in this checkout")
    labels = json.loads((repo_root / "pcaps/sample-darknet.labels.json").read_text())
    check(detect(tmp_path, pcap, labels), labels)


def test_small_scenario_generated(tmp_path: Path) -> None:
    from bench.gen.generate import GenOptions, generate

    pcap = tmp_path / "small.pcap"
    with open(pcap, "wb") as fh:
        gen = generate(GenOptions(scenario="small", seed=3), fh)
    labels = gen.labels
    check(detect(tmp_path, pcap, labels), labels)
