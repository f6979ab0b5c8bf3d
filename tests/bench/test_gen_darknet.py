"""The darknet generator: packets decode as planted (tshark, scapy, dpkt) and labels match the file."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest

from bench.gen.addrs import BOGON_V4, DarkSpace
from bench.gen.generate import GenOptions, generate
from bench.gen.labels import peak_any, peak_stepped

DARKNET = "198.18.0.0/16,2001:2::/48"

FIELDS = [
    "frame.time_epoch", "vlan.id", "ieee8021ad.id", "eth.src", "ip.src", "ip.dst", "ip.id", "ip.ttl",
    "ip.proto", "ip.flags.mf", "ip.frag_offset", "ipv6.src", "ipv6.dst", "ipv6.nxt", "tcp.srcport",
    "tcp.dstport", "tcp.seq_raw",
    "tcp.flags", "tcp.window_size_value", "tcp.option_kind", "tcp.options.mss_val", "udp.srcport",
    "udp.dstport", "dns.id", "nbns.id", "snmp.request_id", "udp.length",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code", "arp.opcode",
    "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status",
    "icmpv6.checksum.status",
]  # fmt: skip


def _gen(path: Path, **kw: Any) -> tuple[dict[str, Any], np.ndarray]:
    with path.open("wb") as fh:
        res = generate(GenOptions(**kw), fh)
    return res.labels, res.packet_entity


def _tshark_fields(tshark: str, path: Path) -> list[dict[str, list[str]]]:
    cmd = [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "tcp.check_checksum:TRUE",
           "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=/t"]  # fmt: skip
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        cols = line.split("\t")
        rows.append({f: (c.split("|") if c else []) for f, c in zip(FIELDS, cols, strict=True)})
    return rows


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, tshark: str) -> dict[str, Any]:
    """The sample scenario, generated once, with tshark's view of every frame."""
    path = tmp_path_factory.mktemp("gen") / "sample.pcap"
    labels, ent = _gen(path, scenario="sample", seed=7, darknet=DARKNET)
    return {"path": path, "labels": labels, "entity": ent, "frames": _tshark_fields(tshark, path)}


def _entities(
    sample: dict[str, Any], **match: Any
) -> list[tuple[dict[str, Any], list[dict[str, list[str]]]]]:
    out = []
    for i, e in enumerate(sample["labels"]["entities"]):
        if all(e.get(k) == v for k, v in match.items()):
            idx = np.flatnonzero(sample["entity"] == i)
            out.append((e, [sample["frames"][j] for j in idx]))
    assert out, f"no entity matches {match}"
    return out


def _int(v: list[str], i: int = 0) -> int:
    return int(v[i], 0)


def _ip(v: list[str], i: int = 0) -> int:
    return int(ipaddress.IPv4Address(v[i]))


def test_every_frame_decodes_with_valid_checksums(sample: dict[str, Any]) -> None:
    frames = sample["frames"]
    assert len(frames) == sample["labels"]["counts"]["packets"] == 40_000
    statuses: dict[str, set[str]] = {}
    for f in frames:
        if f["ip.flags.mf"][:1] == ["1"]:
            continue  # a first fragment's UDP checksum needs the whole datagram: checked below
        for key in ("ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
                    "icmp.checksum.status", "icmpv6.checksum.status"):  # fmt: skip
            statuses.setdefault(key, set()).update(f[key])
    # 1 = good; 3 = not present (the zero checksum of a quoted UDP header), never 0 = bad
    assert statuses["ip.checksum.status"] == {"1"}
    assert statuses["tcp.checksum.status"] == {"1"}
    assert statuses["udp.checksum.status"] <= {"1", "3"} and "1" in statuses["udp.checksum.status"]
    assert statuses["icmp.checksum.status"] == {"1"}
    assert statuses["icmpv6.checksum.status"] == {"1"}


def test_fragmented_datagrams_reassemble_with_valid_udp_checksums(
    sample: dict[str, Any], tshark: str
) -> None:
    out = subprocess.run(
        [tshark, "-n", "-r", str(sample["path"]), "-o", "udp.check_checksum:TRUE", "-Y", "ip.frag_offset > 0",
         "-T", "fields", "-e", "udp.checksum.status", "-e", "udp.length"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    rows = [line.split("\t") for line in out if line]
    assert len(rows) == sample["labels"]["counts"]["ip_fragments"] // 2
    assert all(r == ["1", "1208"] for r in rows)


def test_file_counts_match_labels(sample: dict[str, Any]) -> None:
    frames, c = sample["frames"], sample["labels"]["counts"]
    assert sum(1 for f in frames if f["ipv6.src"]) == c["ipv6"]
    assert sum(1 for f in frames if f["ip.src"]) == c["ipv4"]
    assert sum(1 for f in frames if f["arp.opcode"]) == c["non_ip"] == 20
    assert sum(1 for f in frames if f["vlan.id"]) == c["vlan_tagged"]
    # 802.1ad outer tag (VLAN 400) over an 802.1Q tag (VLAN 10)
    stacked = [f for f in frames if f["ieee8021ad.id"]]
    assert len(stacked) == c["vlan_stacked"] > 0
    assert all(f["ieee8021ad.id"] == ["400"] and f["vlan.id"] == ["10"] for f in stacked)
    frag = sum(
        1 for f in frames if f["ip.flags.mf"][:1] == ["1"] or f["ip.frag_offset"][:1] not in ([], ["0"])
    )
    assert frag == c["ip_fragments"] > 0
    # IPv6 with Hop-by-Hop (0) + Destination Options or a Fragment header (44) before the transport
    assert sum(1 for f in frames if f["ipv6.nxt"][:1] in (["0"], ["44"])) == c["ipv6_ext_headers"] > 0
    per = np.bincount(sample["entity"], minlength=len(sample["labels"]["entities"]))
    assert [e["packets"] for e in sample["labels"]["entities"]] == per.tolist()
    assert sum(c["by_role"].values()) == c["packets"]
    ts = [float(f["frame.time_epoch"][0]) for f in frames]
    assert ts == sorted(ts)
    start = sample["labels"]["start_ts_ns"] / 1e9
    assert start <= ts[0] and ts[-1] <= start + sample["labels"]["duration_s"]


def test_zmap_probes(sample: dict[str, Any]) -> None:
    for e, frames in _entities(sample, tool="zmap", protocol="tcp"):
        for f in frames:
            assert _int(f["ip.id"]) == 54321
            assert _int(f["ip.ttl"]) == 255 - e["hops"]
            assert _int(f["tcp.window_size_value"]) == 65535
            assert _int(f["tcp.flags"]) == 0x002
            assert f["tcp.option_kind"] == (["2"] if e["variant"] == "mss" else [])


def test_masscan_ip_id_formula(sample: dict[str, Any]) -> None:
    for e, frames in _entities(sample, tool="masscan", protocol="tcp"):
        sports = {f["tcp.srcport"][0] for f in frames}
        assert len(sports) == 1
        for f in frames:
            want = (_ip(f["ip.dst"]) ^ _int(f["tcp.dstport"]) ^ _int(f["tcp.seq_raw"])) & 0xFFFF
            assert _int(f["ip.id"]) == want
            assert (_int(f["ip.ttl"]), _int(f["tcp.window_size_value"])) == (255 - e["hops"], 1024)
            assert f["tcp.option_kind"] == []


def test_masscan_udp_cookies(sample: dict[str, Any]) -> None:
    # a port scan of one host; masscan's built-in payloads carry the cookie of its IP ID
    # rule in their request ID, the other probes are empty
    ((e, frames),) = _entities(sample, tool="masscan", protocol="udp")
    assert len({f["udp.srcport"][0] for f in frames}) == 1 and len({f["ip.dst"][0] for f in frames}) == 1
    assert len({f["udp.dstport"][0] for f in frames}) == len(frames) == e["packets"]
    proven = 0
    for f in frames:
        assert _int(f["ip.ttl"]) == 255 - e["hops"]
        ids = f["dns.id"] + f["nbns.id"] + f["snmp.request_id"]
        if ids:
            want = (_ip(f["ip.dst"]) ^ _int(f["udp.dstport"]) ^ int(ids[0], 0)) & 0xFFFF
            assert _int(f["ip.id"]) == want
            proven += 1
        elif _int(f["udp.dstport"]) != 123:  # NTP: a payload without an ID
            assert _int(f["udp.length"]) == 8
    assert proven == 3  # DNS/53, NBNS/137, SNMP/161


def test_mirai_seq_is_destination(sample: dict[str, Any]) -> None:
    for e, frames in _entities(sample, tool="mirai"):
        ports = [_int(f["tcp.dstport"]) for f in frames]
        assert set(ports) == {23, 2323}
        assert 0.02 < ports.count(2323) / len(ports) < 0.25
        for f in frames:
            assert _int(f["tcp.seq_raw"]) == _ip(f["ip.dst"])
            assert _int(f["ip.ttl"]) == 64 - e["hops"]


def test_nmap_scans(sample: dict[str, Any]) -> None:
    for e, frames in _entities(sample, tool="nmap"):
        assert len({f["tcp.srcport"][0] for f in frames}) == 1
        ttls = {_int(f["ip.ttl"]) + e["hops"] for f in frames}
        assert ttls <= set(range(37, 60)) and len(ttls) > 5
        for f in frames:
            assert _int(f["tcp.window_size_value"]) in (1024, 2048, 3072, 4096)
            if e["variant"] == "xmas":  # -sX: FIN-PSH-URG, no options
                assert _int(f["tcp.flags"]) == 0x029 and f["tcp.option_kind"] == []
            else:
                assert _int(f["tcp.flags"]) == 0x002
                assert f["tcp.option_kind"] == ["2"] and f["tcp.options.mss_val"] == ["1460"]
    assert {e["variant"] for e, _ in _entities(sample, tool="nmap")} == {"", "xmas"}


def test_unicornscan_sequence_key(sample: dict[str, Any]) -> None:
    for e, frames in _entities(sample, tool="unicornscan"):
        keys = set()
        for f in frames:
            mix = ((_int(f["tcp.dstport"]) << 16) + _int(f["tcp.srcport"])) & 0xFFFFFFFF
            keys.add(_int(f["tcp.seq_raw"]) ^ _ip(f["ip.dst"]) ^ mix)
        assert keys == {e["signature"]["seq_xor_key"]}


def test_generic_scanners_look_like_an_os(sample: dict[str, Any]) -> None:
    kinds = {"linux": ["2", "4", "8", "1", "3"], "windows": ["2", "1", "3", "1", "1", "4"]}
    for e, frames in _entities(sample, tool="generic", protocol="tcp", ip_version=4):
        initial = 64 if e["variant"] == "linux" else 128
        for f in frames:
            assert f["tcp.option_kind"] == kinds[e["variant"]]
            assert _int(f["ip.ttl"]) == initial - e["hops"]


def test_scan_kinds_reach_thresholds(sample: dict[str, Any]) -> None:
    for e in sample["labels"]["entities"]:
        if e["role"] != "scanner":
            continue
        if e["kind"] in ("horizontal", "strobe"):
            assert e["max_distinct_dsts_per_port"] >= 100, e["id"]
        if e["kind"] == "strobe":
            assert 2 <= e["distinct_ports"] <= 5
        if e["kind"] == "vertical":
            assert e["distinct_dsts"] == 1 and e["distinct_ports"] >= 100
    kinds = {(e["kind"], e["protocol"]) for e in sample["labels"]["entities"] if e["role"] == "scanner"}
    assert {("horizontal", "tcp"), ("vertical", "tcp"), ("strobe", "tcp"), ("random", "tcp"),
            ("horizontal", "udp"), ("strobe", "udp")} <= kinds  # fmt: skip


def test_udp_probes_decode_as_their_service(sample: dict[str, Any], tshark: str) -> None:
    out = subprocess.run(
        [tshark, "-n", "-r", str(sample["path"]), "-q", "-z", "io,phs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for proto in ("dns", "ntp", "snmp", "ssdp", "sip"):
        assert f"  {proto} " in out or f" {proto}  " in out, proto
    assert "malformed" not in out


def test_backscatter_quotes_point_at_the_victim(sample: dict[str, Any]) -> None:
    dark = DarkSpace.parse(DARKNET)
    for e, frames in _entities(sample, role="backscatter", ip_version=4):
        for f in frames:
            if e["response"] in ("syn-ack", "rst", "rst-ack", "echo-reply"):
                assert f["ip.src"] == [e["victim"]]
                assert dark.contains_v4(np.array([_ip(f["ip.dst"])], dtype=np.uint32))[0]
                continue
            outer_src, inner_src = f["ip.src"]
            outer_dst, inner_dst = f["ip.dst"]
            assert inner_dst == e["victim"] and outer_src == e["sender"]
            assert inner_src == outer_dst
            assert f["icmp.type"][0] == str(e["icmp"][0]) and f["icmp.code"][0] == str(e["icmp"][1])
        flags = {f["tcp.flags"][0] for f in frames if f["tcp.flags"]}
        want = {"syn-ack": {"0x0012"}, "rst": {"0x0004"}, "rst-ack": {"0x0014"}}.get(e["response"], set())
        assert flags == want
    for e, frames in _entities(sample, role="backscatter", ip_version=6):
        for f in frames:
            assert ipaddress.IPv6Address(f["ipv6.dst"][0]) in ipaddress.IPv6Network("2001:2::/48")
            if e["response"] != "echo-reply":
                assert f["ipv6.dst"][1] == e["victim"] and f["ipv6.src"][1] == f["ipv6.dst"][0]


def test_backscatter_verdicts(sample: dict[str, Any]) -> None:
    victims = [e for e in sample["labels"]["entities"] if e["role"] == "backscatter"]
    passing = [e for e in victims if e["designed"] == "pass"]
    assert len(passing) >= 10
    for e in victims:
        assert e["expected_pass"] == (e["designed"] == "pass"), e["id"]
        if e["designed"].startswith("fail:"):
            assert e["designed"][5:] in e["fails"]
        # the stepped and the any-start windows agree on the verdict, and no vector is split by idle time
        assert (e["peak_60s"] >= 30) == (e["peak_60s_any"] >= 30)
        assert e["max_gap_s"] < 300
    for e in passing:
        assert e["packets"] >= 100 and e["duration_s"] >= 90 and e["peak_60s"] >= 40
    assert {e["response"] for e in passing} == {
        "syn-ack", "rst", "rst-ack", "echo-reply",
        "unreach-port", "unreach-host", "unreach-admin", "ttl-exceeded",
    }  # fmt: skip
    two = [e["victim"] for e in passing]
    assert any(two.count(v) == 2 for v in two), "one victim has two vectors"


def test_peak_helpers() -> None:
    s = 1_000_000_000
    ts = np.array([0, 5 * s, 59 * s, 61 * s, 65 * s], dtype=np.int64)
    assert peak_any(ts) == 3  # [5, 65) holds 5, 59, 61
    assert peak_stepped(ts) == 3  # [0, 60) holds 0, 5, 59; [10, 70) holds 59, 61, 65


def test_spoofed_floods(sample: dict[str, Any]) -> None:
    bogon = DarkSpace.parse(",".join(BOGON_V4))
    dark = DarkSpace.parse("198.18.0.0/16")
    ((e, frames),) = _entities(sample, reason="bogon")
    src = np.array([_ip(f["ip.src"]) for f in frames], dtype=np.uint32)
    assert bogon.contains_v4(src).all()
    ((e, frames),) = _entities(sample, reason="dark_source")
    assert dark.contains_v4(np.array([_ip(f["ip.src"]) for f in frames], dtype=np.uint32)).all()
    ((e, frames),) = _entities(sample, reason="random")
    assert e["links"] == ["flood-link"] and {f["vlan.id"][0] for f in frames} == {"300"}
    assert {f["ip.dst"][0] for f in frames} == {e["target"]}
    assert e["max_packets_per_src"] == 2 and e["srcs_seen_once"] > e["distinct_srcs"] // 2
    assert e["distinct_ttls"] > 100


def test_background_stays_below_thresholds(sample: dict[str, Any]) -> None:
    ((e, frames),) = _entities(sample, kind="single_probes")
    assert e["max_packets_per_src"] <= 3 and e["max_distinct_dsts_per_src"] <= 3
    assert e["distinct_srcs"] > 5000
    real = {e["src"] for e in sample["labels"]["entities"] if e["role"] == "scanner"}
    assert not real & {f["ip.src"][0] for f in frames}


def test_outside_and_sources_are_disjoint(sample: dict[str, Any]) -> None:
    dark = DarkSpace.parse("198.18.0.0/16")
    ((_, frames),) = _entities(sample, kind="outside_darknet")
    dst = np.array([_ip(f["ip.dst"]) for f in frames], dtype=np.uint32)
    assert not dark.contains_v4(dst).any()
    srcs = [x.get("src") or x.get("victim") for x in sample["labels"]["entities"] if x["role"] in
            ("scanner", "backscatter")]  # fmt: skip
    # one victim has two vectors; every other real source is used once
    assert len(srcs) - len(set(srcs)) == 1


def test_deterministic_per_seed(tmp_path: Path) -> None:
    a, _ = _gen(tmp_path / "a.pcap", scenario="sample", seed=3, packets=20_000)
    b, _ = _gen(tmp_path / "b.pcap", scenario="sample", seed=3, packets=20_000)
    c, _ = _gen(tmp_path / "c.pcap", scenario="sample", seed=4, packets=20_000)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert (tmp_path / "a.pcap").read_bytes() != (tmp_path / "c.pcap").read_bytes()
    assert a == b and a != c


@pytest.mark.parametrize(("fmt", "res"), [("pcap", "ns"), ("pcapng", "us"), ("pcapng", "ns")])
def test_formats_carry_the_same_packets(tmp_path: Path, fmt: str, res: str) -> None:
    base = tmp_path / "base.pcap"
    other = tmp_path / f"other.{fmt}"
    _gen(base, scenario="sample", seed=5, packets=15_000, ts_resolution=res)
    labels, _ = _gen(other, scenario="sample", seed=5, packets=15_000, fmt=fmt, ts_resolution=res)
    magic = other.read_bytes()[:4]
    assert magic == {"pcap": bytes.fromhex("4d3cb2a1"), "pcapng": bytes.fromhex("0a0d0d0a")}[fmt]

    def read(path: Path) -> list[tuple[int, bytes]]:
        with path.open("rb") as fh:
            rd = dpkt.pcapng.Reader(fh) if fmt == "pcapng" and path == other else dpkt.pcap.Reader(fh)
            return [(round(float(ts) * 1e6), bytes(buf)) for ts, buf in rd]

    a, b = read(base), read(other)
    assert len(a) == len(b) == labels["counts"]["packets"]
    assert [x[1] for x in a] == [x[1] for x in b]
    # dpkt hands pcapng times as floats: equal to the microsecond, give or take float rounding
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True)) <= 1


def test_ns_timestamps_keep_nanoseconds(tmp_path: Path, tshark: str) -> None:
    path = tmp_path / "ns.pcapng"
    _gen(path, scenario="sample", seed=6, packets=12_000, fmt="pcapng", ts_resolution="ns")
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-c", "2000"],
                         check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    frac = {t.split(".")[1][6:] for t in out}
    assert len(frac) > 100  # sub-microsecond digits are there


def test_scapy_agrees_on_checksums(sample: dict[str, Any]) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import PcapReader

    with PcapReader(str(sample["path"])) as rd:
        checked = 0
        for i, pkt in enumerate(rd):
            if i >= 3000:
                break
            if IP not in pkt or pkt[IP].frag or pkt[IP].flags.MF:
                continue
            ip = pkt[IP]
            want = ip.chksum
            del ip.chksum
            for layer in (TCP, UDP):
                if layer in pkt:
                    lw = pkt[layer].chksum
                    del pkt[layer].chksum
                    assert IP(bytes(ip))[layer].chksum == lw
            assert IP(bytes(ip)).chksum == want
            checked += 1
    assert checked > 2500


def test_small_darknet_and_several_prefixes(tmp_path: Path) -> None:
    labels, ent = _gen(tmp_path / "t.pcap", scenario="sample", seed=2, packets=30_000,
                       darknet="192.0.2.0/24,198.51.100.0/25")  # fmt: skip
    assert labels["telescope_size_v4"] == 384 and labels["counts"]["ipv6"] == 0
    dark = DarkSpace.parse("192.0.2.0/24,198.51.100.0/25")
    with (tmp_path / "t.pcap").open("rb") as fh:
        dsts = []
        for i, (_, buf) in enumerate(dpkt.pcap.Reader(fh)):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            kind = labels["entities"][ent[i]].get("kind")
            if isinstance(ip, dpkt.ip.IP) and kind != "outside_darknet":
                dsts.append(int.from_bytes(ip.dst, "big"))
    assert dark.contains_v4(np.array(dsts, dtype=np.uint32)).all()


def test_cli_writes_labels_and_rejects_too_few_packets(tmp_path: Path, repo_root: Path) -> None:
    run = [sys.executable, "-m", "bench.gen_darknet", "--scenario", "sample", "--seed", "1"]
    ok = subprocess.run([*run, "--packets", "12000", "--out", str(tmp_path / "x.pcap"), "--labels",
                         str(tmp_path / "x.json"), "--packet-labels", str(tmp_path / "x.npy")],
                        cwd=repo_root, capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    labels = json.loads((tmp_path / "x.json").read_text())
    assert labels["schema"] == "darknet-iodef-bench-labels/1" and labels["counts"]["packets"] == 12_000
    assert len(np.load(tmp_path / "x.npy")) == 12_000
    bad = subprocess.run([*run, "--packets", "100", "--out", str(tmp_path / "y.pcap")], cwd=repo_root,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("gen_darknet: scenario 'sample' plants") and "Traceback" not in bad.stderr


def test_committed_sample_is_reproducible(tmp_path: Path, repo_root: Path) -> None:
    """pcaps/README.md's one command writes exactly the committed sample and its labels."""
    made_with = json.loads((repo_root / "pcaps" / "sample-darknet.labels.json").read_text())["numpy"]
    if made_with != np.__version__:
        pytest.skip(
            f"the sample was made with numpy {made_with}; numpy {np.__version__} may draw other numbers"
        )
    cmd = (repo_root / "pcaps" / "README.md").read_text().split("```")[1].strip().split()
    assert cmd[:3] == ["python", "-m", "bench.gen_darknet"]
    out = [str(tmp_path / Path(a).name) if a.startswith("pcaps/") else a for a in cmd[3:]]
    subprocess.run(
        [sys.executable, "-m", "bench.gen_darknet", *out], cwd=repo_root, check=True, capture_output=True
    )
    for name in ("sample-darknet.pcap", "sample-darknet.labels.json"):
        assert (tmp_path / name).read_bytes() == (repo_root / "pcaps" / name).read_bytes(), name


def test_pcapng_interface_per_link(tmp_path: Path, tshark: str) -> None:
    path = tmp_path / "links.pcapng"
    labels, _ = _gen(path, scenario="sample", seed=8, packets=12_000, fmt="pcapng", interface_per_link=True)
    assert labels["interfaces"] == [lk["name"] for lk in labels["links"]]
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f", "-e", "frame.interface_id",
         "-e", "frame.interface_name", "-e", "eth.src", "-e", "vlan.id", "-e", "ieee8021ad.id"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(out) == 12_000
    seen = set()
    for line in out:
        iface, name, mac, vlan, outer = line.split("\t")
        link = labels["links"][int(iface)]
        assert name == link["name"] and mac == link["src_mac"]
        assert (outer or vlan) == (str(link["vlan"][0]) if link["vlan"] else "")
        seen.add(int(iface))
    assert seen == set(range(len(labels["links"])))


def test_pcap_cannot_have_several_interfaces(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pcapng"):
        _gen(tmp_path / "x.pcap", scenario="sample", packets=12_000, interface_per_link=True)


def test_fingerprint_names_the_tool(sample: dict[str, Any]) -> None:
    for e in sample["labels"]["entities"]:
        if e["role"] == "scanner":
            want = None if e["tool"] == "generic" else e["tool"]
            assert e["fingerprint"] == want, e["id"]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_snaplen_keeps_headers_only(tmp_path: Path, tshark: str, fmt: str) -> None:
    full, cut = tmp_path / f"full.{fmt}", tmp_path / f"cut.{fmt}"
    _gen(full, scenario="sample", seed=9, packets=12_000, fmt=fmt)
    labels, _ = _gen(cut, scenario="sample", seed=9, packets=12_000, fmt=fmt, snaplen=96)
    assert labels["snaplen"] == 96

    def fields(path: Path) -> list[list[str]]:
        out = subprocess.run(
            [tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.cap_len"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        return [line.split("\t") for line in out.splitlines()]

    a, b = fields(full), fields(cut)
    assert [x[0] for x in a] == [y[0] for y in b]  # original lengths kept
    assert all(int(y[1]) == min(int(y[0]), 96) for y in b)
    assert any(int(y[0]) > 96 for y in b)
    # the kept bytes are the first 96 of each frame
    with full.open("rb") as f1, cut.open("rb") as f2:
        rd = dpkt.pcapng.Reader if fmt == "pcapng" else dpkt.pcap.Reader
        for (_, x), (_, y) in zip(rd(f1), rd(f2), strict=True):
            assert bytes(y) == bytes(x)[:96]


@pytest.mark.parametrize(("how", "opener"), [("gzip", "gzip"), ("bzip2", "bz2"), ("xz", "lzma")])
def test_compressed_output(tmp_path: Path, repo_root: Path, how: str, opener: str) -> None:
    import importlib

    run = [sys.executable, "-m", "bench.gen_darknet", "--scenario", "sample", "--packets", "12000"]
    subprocess.run(
        [*run, "--out", str(tmp_path / "plain.pcap")], cwd=repo_root, check=True, capture_output=True
    )
    subprocess.run([*run, "--out", str(tmp_path / "packed"), "--compress", how], cwd=repo_root, check=True,
                   capture_output=True)  # fmt: skip
    mod = importlib.import_module(opener)
    assert mod.decompress((tmp_path / "packed").read_bytes()) == (tmp_path / "plain.pcap").read_bytes()


@pytest.mark.parametrize(
    ("darknet", "reason"),
    [("10.0.0.1/8", "has host bits set"), ("2001:2::/48", "at least one IPv4 prefix"),
     ("198.18.0.0/16,198.18.1.0/24", "overlap")],
)  # fmt: skip
def test_cli_rejects_bad_darknets_in_one_line(
    tmp_path: Path, repo_root: Path, darknet: str, reason: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gen_darknet", "--scenario", "sample", "--darknet", darknet, "--out",
         str(tmp_path / "x.pcap")],
        cwd=repo_root, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and reason in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # no half-written capture left


@pytest.mark.parametrize(
    "kw",
    [
        {"byte_order": "big"},
        {"fmt": "pcapng", "sections": 3},
        {"fmt": "pcapng", "byte_order": "big", "sections": 2},
    ],
    ids=["pcap-big", "pcapng-3-sections", "pcapng-big-2-sections"],
)
def test_byte_orders_and_sections_read_the_same_in_tshark(
    tmp_path: Path, tshark: str, kw: dict[str, Any]
) -> None:
    def view(path: Path) -> str:
        return subprocess.run(
            [tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len",
             "-e", "eth.src", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.seq_raw"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    plain, other = tmp_path / "plain", tmp_path / "other"
    _gen(plain, scenario="sample", seed=10, packets=12_000)
    _gen(other, scenario="sample", seed=10, packets=12_000, **kw)
    head = other.read_bytes()[:12]
    if kw.get("fmt") == "pcapng":
        want = bytes.fromhex("1a2b3c4d") if kw.get("byte_order") == "big" else bytes.fromhex("4d3c2b1a")
        assert head[8:12] == want
        assert other.read_bytes().count(bytes.fromhex("0a0d0d0a")) >= kw["sections"]
    else:
        assert head[:4] == bytes.fromhex("a1b2c3d4")  # big-endian magic
    a, b = view(plain), view(other)
    assert a == b and a.count("\n") == 12_000


@pytest.mark.parametrize(
    "kw", [{"scenario": "sample"}, {"scenario": "small", "packets": 120_000, "darknet": "203.0.113.0/24"}]
)
def test_labels_follow_their_json_schema(tmp_path: Path, repo_root: Path, kw: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads((repo_root / "bench" / "gen" / "labels.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    labels, _ = _gen(tmp_path / "x.pcap", seed=13, **kw)
    jsonschema.Draft202012Validator(schema).validate(labels)
    committed = json.loads((repo_root / "pcaps" / "sample-darknet.labels.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(committed)
    # the schema is not a rubber stamp: a label with an unknown role fails
    bad = json.loads(json.dumps(labels))
    bad["entities"][0]["role"] = "attacker"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_syn_ack_retransmissions(sample: dict[str, Any]) -> None:
    """Repeated SYN-ACKs go to the same spoofed address and port with the same sequence numbers,
    1, 3, 7, 15 or 31 s after the first (Linux tcp_synack_retries)."""
    for e, frames in _entities(sample, role="backscatter", response="syn-ack"):
        first: dict[tuple[str, str, str], float] = {}
        repeats = 0
        for f in frames:
            key = (f["ip.dst"][0], f["tcp.dstport"][0], f["tcp.seq_raw"][0])
            t = float(f["frame.time_epoch"][0])
            if key in first:
                repeats += 1
                assert round(t - first[key]) in (1, 3, 7, 15, 31)
            else:
                first[key] = t
        assert repeats == e["retransmissions"] and e["distinct_dsts"] <= e["packets"] - repeats
    assert sum(e["retransmissions"] for e, _ in _entities(sample, response="syn-ack")) > 20
