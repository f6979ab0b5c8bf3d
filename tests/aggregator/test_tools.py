"""Tool fingerprints: several sampled probes must all match (DOMAIN.md section 4)."""

from __future__ import annotations

import ipaddress

import numpy as np

from aggregator.fingerprints import TOOLS, tool_matches
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
