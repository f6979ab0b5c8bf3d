"""Tool fingerprints: several sampled probes must all match (DOMAIN.md section 4)."""

from __future__ import annotations

import ipaddress

import numpy as np

from aggregator.fingerprints import TOOLS, tool_matches, tools_tested, udp_cookie
from tests.aggregator.flowmaker import batch, samples
from tests.aggregator.test_scan import horizontal, run

NAMES = [t.name for t in TOOLS]


def _v4(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def masscan_probe(dst: str, dport: int, seq: int) -> dict:
    return {
        "src_ip": "45.1.1.1",
        "dst_ip": dst,
        "dst_port": dport,
        "tcp_seq": seq,
        "tcp_window": 1024,
        "ttl": 240,
        "ip_id": (_v4(dst) ^ dport ^ seq) & 0xFFFF,
    }


def test_masscan_compares_the_low_16_bits_only() -> None:
    # dst ^ dport ^ seq has high bits set: only the masked value can equal an IP ID
    p = masscan_probe("198.18.200.7", 23, 0x9ABC_DEF0)
    assert (_v4("198.18.200.7") ^ 23 ^ 0x9ABC_DEF0) > 0xFFFF
    m = tool_matches(samples([p]))
    assert dict(zip(NAMES, m[0].tolist(), strict=True))["masscan"] is True
    wrong = dict(p, ip_id=(p["ip_id"] + 1) & 0xFFFF)
    assert tool_matches(samples([wrong]))[0, NAMES.index("masscan")] == False  # noqa: E712


def test_each_rule_on_one_probe() -> None:
    probes = {
        "zmap": {"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1", "ip_id": 54321, "ttl": 250},
        "mirai": {"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1", "tcp_seq": _v4("198.18.0.1"), "dst_port": 23},
        "nmap": {
            "src_ip": "45.1.1.1",
            "dst_ip": "198.18.0.1",
            "tcp_window": 1024,
            "tcp_opt_kinds": 2,
            "tcp_mss": 1460,
            "ttl": 45,
        },
    }
    for name, p in probes.items():
        row = tool_matches(samples([p]))[0]
        assert [n for n, hit in zip(NAMES, row.tolist(), strict=True) if hit and n != "unicornscan"] == [name]
    # a SYN-ACK is no probe
    assert not tool_matches(samples([dict(probes["mirai"], tcp_flags=0x12)]))[0, NAMES.index("mirai")]
    # Nmap with an option besides MSS (kinds MSS, NOP) is not Nmap -sS
    assert not tool_matches(samples([dict(probes["nmap"], tcp_opt_kinds=0x0102)]))[0, NAMES.index("nmap")]


def _head(payload: bytes) -> bytes:
    return payload[:24].ljust(24, b"\0")


def masscan_udp_probe(dst: str, dport: int, payload: bytes, cookie: int) -> dict:
    return {
        "src_ip": "45.2.2.2",
        "dst_ip": dst,
        "protocol": 17,
        "tcp_flags": 0,
        "tcp_window": 0,
        "tcp_hdr_len": 0,
        "src_port": 51436,
        "dst_port": dport,
        "ttl": 252,
        "ip_id": (_v4(dst) ^ dport ^ cookie) & 0xFFFF,
        "payload_len": len(payload),
        "payload_cap": min(len(payload), 24),
        "payload_head": _head(payload),
    }


# masscan's built-in payloads (as in ../shared/pcaps/scan_masscan_udp0-1000_esnet.pcap)
DNS = bytes.fromhex("0ab1012000010000000000000776657273696f6e0462696e64c01b00100003")
NBNS = bytes.fromhex("34d40000000100000000000020434b41") + b"A" * 30 + bytes.fromhex("0000210001")
SNMP = bytes.fromhex("30390201000406") + b"public" + bytes.fromhex("a02c02046089c01c020100020100301e")


def test_masscan_udp_cookie_in_request_ids() -> None:
    probes = [
        masscan_udp_probe("198.124.152.15", 53, DNS, 0x0AB1),
        masscan_udp_probe("198.124.152.15", 137, NBNS, 0x34D4),
        masscan_udp_probe("198.124.152.15", 161, SNMP, 0xC01C),  # low bits of request-id 0x6089c01c
    ]
    has, cookie = udp_cookie(samples(probes))
    assert has.tolist() == [True, True, True] and cookie.tolist() == [0x0AB1, 0x34D4, 0xC01C]
    m = tool_matches(samples(probes))
    assert m[:, NAMES.index("masscan")].tolist() == [True, True, True]
    # the capture's real IP IDs satisfy the rule (tshark: 0x928b, 0xac52, 0x58b2)
    assert [p["ip_id"] for p in probes] == [0x928B, 0xAC52, 0x58B2]
    # a wrong cookie fails; an empty probe, or a payload on a port without a known layout,
    # is not tested at all (nothing to compare)
    wrong = dict(probes[0], ip_id=probes[0]["ip_id"] ^ 1)
    empty = masscan_udp_probe("198.124.152.15", 636, b"", 0)
    other = masscan_udp_probe("198.124.152.15", 5060, DNS, 0x0AB1)
    short = dict(probes[0], payload_len=8)  # shorter than a DNS header
    snmp_cut = dict(probes[2], payload_cap=20)  # request-id past the captured bytes
    rows = samples([wrong, empty, other, short, snmp_cut])
    assert tools_tested(rows)[:, NAMES.index("masscan")].tolist() == [True, False, False, False, False]
    assert not tool_matches(rows)[:, NAMES.index("masscan")].any()


def test_masscan_udp_named_from_three_cookies_among_empty_probes(make_agg) -> None:
    target = "198.18.9.9"
    flows = [
        {"src_ip": "45.2.2.2", "dst_ip": target, "protocol": 17, "tcp_flags": 0, "dst_port": port, "ttl": 252,
         "ip_len": 28, "src_port": 51436}
        for port in range(100, 130)
    ]  # fmt: skip
    empty = [masscan_udp_probe(target, 100 + i, b"", 0) for i in range(4)]
    cookies = [
        masscan_udp_probe(target, 53, DNS, 0x0AB1),
        masscan_udp_probe(target, 137, NBNS, 0x34D4),
        masscan_udp_probe(target, 161, SNMP, 0xC01C),
    ]
    (ev,) = run(make_agg(), batch(flows, empty + cookies[:2]))
    assert (ev["source.ip"], ev["extra.kind"], ev["extra.tool"]) == ("45.2.2.2", "vertical", None)
    (ev,) = run(make_agg(), batch(flows, empty + cookies))
    assert ev["extra.tool"] == "masscan"
    assert ev["extra.tool_evidence"]["masscan"].startswith("3/3 sampled probes")
    assert ev["extra.tool_samples"] == 7


def test_nmap_stealth_probes() -> None:
    base = {"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1", "tcp_window": 3072, "tcp_hdr_len": 20, "ttl": 40,
            "tcp_opt_kinds": 0}  # fmt: skip
    col = NAMES.index("nmap")
    for flags in (0x00, 0x01, 0x29, 0x10, 0x11):  # NULL, FIN, Xmas, ACK, Maimon
        assert tool_matches(samples([dict(base, tcp_flags=flags)]))[0, col], hex(flags)
    # nmap puts options on SYN probes only; another window or a TTL of 64 is not nmap
    bads = ({"tcp_hdr_len": 24, "tcp_opt_kinds": 2}, {"tcp_window": 1025}, {"ttl": 64}, {"tcp_flags": 0x04})
    for bad in bads:
        assert not tool_matches(samples([{**base, "tcp_flags": 0x29, **bad}]))[0, col], bad


def test_three_matching_probes_name_the_tool(make_agg) -> None:
    smp = [
        {"src_ip": "45.1.1.1", "dst_ip": f"198.18.0.{i + 1}", "ip_id": 54321, "ttl": 250} for i in range(3)
    ]
    (ev,) = run(make_agg(), batch(horizontal("45.1.1.1", 10), smp))
    assert ev["extra.tool"] == "zmap" and ev["classification.identifier"] == "zmap"
    assert ev["extra.tool_evidence"] == {"zmap": "3/3 sampled probes: ip_id == 54321"}
    assert ev["extra.confidence"] == 0.9


def test_lone_54321_probe_claims_nothing(make_agg) -> None:
    smp = [{"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1", "ip_id": 54321}]
    (ev,) = run(make_agg(), batch(horizontal("45.1.1.1", 10), smp))
    assert ev["extra.tool"] is None and ev["classification.identifier"] == "scan"
    assert ev["extra.tool_evidence"] == {"zmap": "1/1 sampled probes: ip_id == 54321"}


def test_one_mismatching_probe_of_four_claims_nothing(make_agg) -> None:
    smp = [
        {"src_ip": "45.1.1.1", "dst_ip": f"198.18.0.{i + 1}", "ip_id": 54321 if i else 7} for i in range(4)
    ]
    (ev,) = run(make_agg(), batch(horizontal("45.1.1.1", 10), smp))
    assert ev["extra.tool"] is None
    assert ev["extra.tool_evidence"] == {"zmap": "3/4 sampled probes: ip_id == 54321"}


def test_samples_add_up_across_intervals(make_agg) -> None:
    agg = make_agg()
    mk = lambda i: masscan_probe(f"198.18.1.{i}", 80, 1000 * i + 77)  # noqa: E731
    b1 = batch(horizontal("45.1.1.1", 6), [mk(1), mk(2)])
    from tests.aggregator.flowmaker import SEC, T0

    b2 = batch(horizontal("45.1.1.1", 10), [mk(3)], start=T0 + 60 * SEC)
    events = run(agg, b1, b2)
    (ev,) = events
    assert ev["extra.tool"] == "masscan"
    assert ev["extra.tool_samples"] == 3


def test_unicornscan_constant_and_mirai(make_agg) -> None:
    key = 0x1234_5678
    uni = []
    for i in range(4):
        dst, dport, sport = f"198.18.2.{i + 1}", 80 + i, 50000
        seq = key ^ _v4(dst) ^ ((dport << 16) + sport)
        uni.append(
            {
                "src_ip": "45.7.7.7",
                "dst_ip": dst,
                "dst_port": dport,
                "src_port": sport,
                "tcp_seq": seq,
                "ip_id": 1000 + 37 * i,
                "tcp_window": 4096,
            }
        )
    mirai = [
        {
            "src_ip": "45.8.8.8",
            "dst_ip": f"198.18.3.{i + 1}",
            "dst_port": 23,
            "tcp_seq": _v4(f"198.18.3.{i + 1}"),
        }
        for i in range(3)
    ]
    events = {
        e["source.ip"]: e
        for e in run(make_agg(), batch(horizontal("45.7.7.7", 10) + horizontal("45.8.8.8", 10), uni + mirai))
    }
    assert events["45.7.7.7"]["extra.tool"] == "unicornscan"
    assert events["45.8.8.8"]["extra.tool"] == "mirai"
    assert events["45.8.8.8"]["extra.tool_evidence"]["mirai"] == "3/3 sampled probes: seq == dst"


def test_fingerprint_table_is_complete() -> None:
    assert NAMES == ["masscan", "mirai", "zmap", "nmap", "unicornscan"]
    assert tool_matches(samples([])).shape == (0, 5)
    assert isinstance(tool_matches(samples([{"src_ip": "45.1.1.1", "dst_ip": "198.18.0.1"}])), np.ndarray)


def test_constant_header_flood_is_no_decoy_group(make_agg) -> None:
    # 200 sources send the very same probe (hping-style constant seq and IP ID):
    # too many to be nmap decoys, so no group is formed
    smp = [
        {"src_ip": f"45.2.{i // 200}.{i % 200 + 1}", "dst_ip": "198.18.0.1", "tcp_seq": 7, "ip_id": 9}
        for i in range(200)
    ]
    rows = [{"src_ip": r["src_ip"], "dst_ip": "198.18.0.1"} for r in smp]
    agg = make_agg()
    agg.process(batch(rows, smp))
    assert agg.scan.decoy_groups == {}
    # while two to a hundred and twenty-nine sharing probes are
    from tests.aggregator.flowmaker import SEC, T0

    agg.process(batch(rows[:3], smp[:3], start=T0 + 60 * SEC))
    assert [len(m) for m in agg.scan.decoy_groups.values()] == [3]
    assert agg.metrics()["darknet_aggregator_decoy_groups"] == 1
