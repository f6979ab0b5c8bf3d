"""Spoofed sources: per-packet reasons, per-source judgement, per-link summaries."""

from __future__ import annotations

import numpy as np

from aggregator import spoof_rules as sr
from tests.aggregator.flowmaker import batch, flows
from tests.aggregator.test_scan import horizontal, run


def reasons_of(row: dict) -> list[str]:
    f = flows([{"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1", **row}])
    from aggregator.keys import addr_key

    key, is4 = addr_key(f["src_ip"])
    bits = sr.flow_reasons(f, key, is4, f["src_ip"] == f["dst_ip"], np.zeros(1, dtype=bool))
    return sr.reason_names(int(bits[0]))


def test_corsaro_per_packet_reasons() -> None:
    assert reasons_of({}) == []
    assert reasons_of({"protocol": 47}) == ["protocol"]
    assert reasons_of({"tcp_flags": 0x29}) == ["tcp-flags"]  # FIN-PSH-URG (Xmas)
    assert reasons_of({"tcp_flags": 0xC2}) == []  # SYN with ECE+CWR is a normal SYN
    assert reasons_of({"ttl": 200}) == ["ttl-200"]
    assert reasons_of({"ttl": 199}) == []
    assert reasons_of({"ttl": 240, "protocol": 1, "src_port": 8, "tcp_flags": 0}) == []  # ICMP exempt
    # masscan-shaped: SYN, window 1024, no options
    assert reasons_of({"ttl": 255, "tcp_window": 1024, "tcp_hdr_len": 20}) == []
    assert reasons_of({"ttl": 255, "tcp_window": 1024, "tcp_hdr_len": 24}) == ["ttl-200"]
    # ... and an empty UDP datagram (masscan on a port it has no payload for)
    udp = {"protocol": 17, "tcp_flags": 0, "tcp_window": 0, "tcp_hdr_len": 0, "dst_port": 636}
    assert reasons_of({**udp, "ttl": 252, "ip_len": 28}) == []
    assert reasons_of({**udp, "ttl": 252, "ip_len": 29}) == ["ttl-200"]
    assert reasons_of({"ip_flags": 0x08}) == ["fragment"]
    assert reasons_of({"ip_flags": 0x04}) == ["fragment"]
    assert reasons_of({"src_ip": "45.1.1.0"}) == ["last-byte-0-255"]
    assert reasons_of({"src_ip": "45.1.1.255"}) == ["last-byte-0-255"]
    assert reasons_of({"src_ip": "198.18.0.1"}) == ["src-equals-dst"]
    assert reasons_of({"dst_port": 0}) == ["port-0"]
    assert reasons_of({"protocol": 17, "dst_port": 80, "tcp_flags": 0}) == ["udp-80"]
    assert reasons_of({"protocol": 17, "dst_port": 53, "tcp_flags": 0}) == []


def test_hop_count() -> None:
    assert sr.hop_count(np.array([64, 50, 65, 128, 255, 240, 1], dtype=np.uint8)).tolist() == [
        0,
        14,
        63,
        0,
        0,
        15,
        31,
    ]


def test_bogon_and_dark_sources_are_summarised_never_accused(make_agg) -> None:
    rows = horizontal("10.9.9.9", 20) + horizontal("198.18.5.5", 20)
    for r in rows:
        r["vlan"] = 12
    (ev,) = run(make_agg(), batch(rows))
    assert ev["classification.identifier"] == "ip-spoofer"
    assert (ev["classification.taxonomy"], ev["classification.type"]) == ("fraud", "masquerade")
    assert "source.ip" not in ev
    assert ev["extra.ingress"] == "vlan:12"
    assert (ev["extra.packets"], ev["extra.sources_distinct"]) == (40, 2)
    # the test telescope 198.18.0.0/16 is itself special-purpose (benchmarking, RFC 2544)
    assert ev["extra.reasons"] == {"bogon": 40, "inside-darknet": 20}


def test_summary_per_ingress_link(make_agg) -> None:
    a = [dict(r, src_mac=0x0011_2233_4455) for r in horizontal("10.1.1.1", 10)]
    b = [dict(r, src_mac=0x0066_7788_99AA) for r in horizontal("10.2.2.2", 9)]
    (ev,) = run(make_agg(), batch(a + b))  # the second link is below 10 packets
    assert ev["extra.ingress"] == "mac:00:11:22:33:44:55"
    assert ev["extra.packets"] == 10


def test_ttl_200_flood_is_spoofing_not_a_scanner(make_agg) -> None:
    rows = [dict(r, ttl=242, tcp_window=0) for r in horizontal("45.1.1.1", 30)]
    (ev,) = run(make_agg(), batch(rows))
    assert ev["classification.identifier"] == "ip-spoofer"
    assert ev["extra.reasons"] == {"ttl-200": 30}


def test_zmap_proven_by_samples_is_not_spoofed_for_its_ttl(make_agg) -> None:
    rows = [dict(r, ttl=250) for r in horizontal("45.1.1.1", 10)]
    smp = [
        {"src_ip": "45.1.1.1", "dst_ip": f"198.18.0.{i + 1}", "ip_id": 54321, "ttl": 250} for i in range(3)
    ]
    (ev,) = run(make_agg(), batch(rows, smp))
    assert ev["extra.tool"] == "zmap" and ev["source.ip"] == "45.1.1.1"


def test_odd_flags_of_a_proven_tool_are_no_spoofing(make_agg) -> None:
    # nmap -sX: FIN-PSH-URG, no options, window 1024-4096, TTL below 60 (seen after some hops)
    xmas = {"tcp_flags": 0x29, "tcp_window": 2048, "tcp_hdr_len": 20, "ttl": 47}
    probes = horizontal("45.1.1.1", 20)
    rows = [dict(r, dst_ip="198.18.0.1", dst_port=1 + i, **xmas) for i, r in enumerate(probes)]
    (spoofed,) = run(make_agg(), batch(rows))
    assert spoofed["classification.identifier"] == "ip-spoofer" and "source.ip" not in spoofed
    assert spoofed["extra.reasons"] == {"tcp-flags": 20}
    smp = [{"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1", "dst_port": 1 + i, **xmas} for i in range(3)]
    (ev,) = run(make_agg(), batch(rows, smp))
    assert (ev["source.ip"], ev["extra.tool"], ev["extra.kind"]) == ("45.1.1.1", "nmap", "vertical")


def test_ttl_inconsistent_source_is_judged_spoofed(make_agg) -> None:
    rows = horizontal("45.1.1.1", 20)
    for i, r in enumerate(rows):
        r["ttl"] = 30 + 10 * (i % 5)  # TTL 30-70: hop counts 2..58, and not Nmap's 37-59 window
    (ev,) = run(make_agg(), batch(rows))
    assert ev["classification.identifier"] == "ip-spoofer"
    assert ev["extra.reasons"] == {"ttl-inconsistent": 20}
    # the same spread explained by an Nmap fingerprint is a real scanner
    smp = [
        {
            "src_ip": "45.1.1.1",
            "dst_ip": f"198.18.0.{i + 1}",
            "tcp_window": 1024,
            "tcp_opt_kinds": 2,
            "tcp_mss": 1460,
            "ttl": 40 + i,
        }
        for i in range(3)
    ]
    (ev,) = run(make_agg(), batch(rows, smp))
    assert ev["extra.tool"] == "nmap" and ev["source.ip"] == "45.1.1.1"


def test_small_hop_spread_is_consistent(make_agg) -> None:
    rows = horizontal("45.1.1.1", 20)
    for i, r in enumerate(rows):
        r["ttl"] = 50 + (i % 9)  # spread 8: allowed
    (ev,) = run(make_agg(), batch(rows))
    assert ev["classification.identifier"] == "scan"


def test_mostly_tagged_source_is_never_a_scanner(make_agg) -> None:
    # 10 clean probes + 10 tagged (UDP to port 80): half tagged -> spoofed
    rows = horizontal("45.1.1.1", 10) + [
        {"src_ip": "45.1.1.1", "dst_ip": f"198.18.9.{i}", "protocol": 17, "dst_port": 80, "tcp_flags": 0}
        for i in range(1, 11)
    ]
    events = run(make_agg(), batch(rows))
    assert [e["classification.identifier"] for e in events] == ["ip-spoofer"]
    # 11 clean + 10 tagged: a scanner (the tagged probes do not count towards it)
    rows.append({"src_ip": "45.1.1.1", "dst_ip": "198.18.8.8", "dst_port": 23})
    kinds = sorted(e["classification.identifier"] for e in run(make_agg(), batch(rows)))
    assert kinds == ["ip-spoofer", "scan"]
    (scan,) = [e for e in run(make_agg(), batch(rows)) if e["classification.identifier"] == "scan"]
    assert scan["extra.packets"] == 11 and scan["extra.destinations_distinct"] == 11


def test_internal_sources_are_not_bogons(make_agg) -> None:
    (ev,) = run(make_agg(internal_sources="10.0.0.0/8"), batch(horizontal("10.9.9.9", 10)))
    assert ev["classification.identifier"] == "scan" and ev["source.ip"] == "10.9.9.9"


def test_tool_proof_holds_for_every_chunk_of_a_batch(make_agg, monkeypatch) -> None:
    import aggregator.engine

    monkeypatch.setattr(aggregator.engine, "CHUNK_FLOWS", 3)
    rows = [dict(r, ttl=250) for r in horizontal("45.1.1.1", 10)]
    smp = [
        {"src_ip": "45.1.1.1", "dst_ip": f"198.18.0.{i + 1}", "ip_id": 54321, "ttl": 250} for i in range(3)
    ]
    (ev,) = run(make_agg(), batch(rows, smp))
    assert (ev["extra.tool"], ev["extra.packets"]) == ("zmap", 10)
