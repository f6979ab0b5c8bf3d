"""``darknet-iodef sensor`` end to end on real captures, checked against tshark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from darknet_iodef.addresses import format_addr16
from darknet_iodef.cli import main
from darknet_iodef.errors import RecordError
from darknet_iodef.flowtuple import FlowBatch, read_batches
from tests.sensor.tshark_flows import KEY_NAMES, tshark_flow_counts

ZMAP = "scan_zmap_tcp80_10k_internet.pcap"
ALL = "0.0.0.0/0,::/0"


def read_flows(path: Path) -> list[FlowBatch]:
    with open(path, "rb") as fh:
        return list(read_batches(fh, str(path)))


def flow_counts(batches: list[FlowBatch]) -> Counter[tuple]:
    out: Counter[tuple] = Counter()
    for b in batches:
        for r in b.flows:
            q = r["quoted_dst_ip"].tobytes()
            key = (
                b.interval_start_ns, format_addr16(r["src_ip"]), format_addr16(r["dst_ip"]),
                *(int(r[n]) for n in KEY_NAMES[3:14]),
                format_addr16(q) if q != bytes(16) else None,
                *(int(r[n]) for n in KEY_NAMES[15:]),
            )
            out[key] += int(r["packet_count"])
    return out


def sensor(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "out.flows"
    rc = main(["sensor", "--out", str(out), "--name", "test", *args])
    return rc, out


#: every capture in ../shared/pcaps but two: fmt_pcapng_be_all_blocks and
#: fmt_pcapng_be_multisection_mixed_endian hold Simple Packet Blocks, which have
#: no timestamp at all (tshark shows none; the parser's choice is tested with it)
ALL_SHARED = [
    "backbone_2010_vlan_frag_hdrs.pcap", "dos_dns_amp_rrsig_fragmented.pcap",
    "dos_syn_ecn_cwr_spoofed.pcap", "dos_synflood_spoofed_bogon_ppa.pcap",
    "dos_synflood_spoofed_random_src.pcap", "dos_tcp_synack_reflection_at_victim.pcap",
    "fmt_bigendian_pptp.pcap", "fmt_cut_short_DERIVED_zmap_first100000B.pcap",
    "fmt_ipv6_real_2000.pcap", "fmt_linktype_raw101_ipv4.pcap",
    "fmt_pcapng_multi_interface_tsresol.pcapng", "fmt_rawip4_synflood_scapy.pcap", "fmt_sll2.pcap",
    "fmt_sll_v1_waikato2011.pcap", "fmt_vlan_qinqinq.pcap", "scan_angryip_icmp_tcp_sweep.pcap",
    "scan_masscan_tcp0-1000_esnet.pcap", "scan_masscan_tcp1-600_internet_host.pcap",
    "scan_masscan_udp0-1000_esnet.pcap", "scan_nmap_decoy_spoofed_sources.pcapng",
    "scan_nmap_syn_scanme_2010.pcap", "scan_nmap_synping_sweep_24.pcap",
    "scan_nmap_udp_icmp_unreach_evilfingers.pcap", "scan_nmap_udpping_sweep_classE.pcap",
    "scan_nmap_xmas_evilfingers.pcap", "unsolicited_inbound_real_host_818s.pcap",
    "wits2004_100pkts.pcap", "wits2004_100pkts.pcapng", "wits2004_100pkts_nsec.pcap",
]


@pytest.mark.shared
@pytest.mark.parametrize(
    ("capture", "dark", "interval"),
    [
        (ZMAP, ["0.0.0.0/0"], 60),  # the darknet covers the whole scanned space
        (ZMAP, ["128.0.0.0/1"], 5),  # half of it, and 5 s intervals (three of them)
        ("scan_nmap_udp_icmp_unreach_evilfingers.pcap", ["0.0.0.0/0"], 60),  # ICMP errors, quoted
        ("fmt_ipv6_real_2000.pcap", ["::/0"], 60),
        ("backbone_2010_vlan_frag_hdrs.pcap", ["70.0.0.0/8", "172.0.0.0/8"], 10),  # VLAN, fragments
        *((name, ["0.0.0.0/0", "::/0"], 60) for name in ALL_SHARED),
    ],
)
def test_flow_tuples_equal_tshark(shared_pcaps: Path, tshark: str, tmp_path: Path, capture: str,
                                  dark: list[str], interval: int) -> None:
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / capture), "--darknet", ",".join(dark),
                     "--interval", str(interval))
    assert rc == 0
    batches = read_flows(out)
    expect = tshark_flow_counts(tshark, shared_pcaps / capture, interval, dark)
    got = flow_counts(batches)
    assert sum(expect.values()) > 0
    assert got == expect
    assert sum(b.stats["dark_packets"] for b in batches) == sum(expect.values())
    assert [b.interval_ns for b in batches] == [interval * 10**9] * len(batches)
    assert [b.interval_start_ns for b in batches if len(b.flows)] == sorted({k[0] for k in expect})


@pytest.mark.shared
def test_zmap_scan_figures_and_samples(shared_pcaps: Path, tshark: str, tmp_path: Path) -> None:
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP), "--darknet", "0.0.0.0/0")
    assert rc == 0
    (batch,) = read_flows(out)
    st = batch.stats
    # capinfos: 10055 packets; 12 are ARP; 30 distinct IPv4 sources, one tuple per packet
    assert (st["packets"], st["not_ip_packets"], st["dark_packets"]) == (10055, 12, 10043)
    assert (st["flows"], st["sources"], st["samples"]) == (10043, 30, 30 + 3)
    assert batch.interval_start_ns == 1629438420 * 10**9
    scanner = [s for s in batch.samples if format_addr16(s["src_ip"]) == "192.168.37.132"]
    # the scanner's first four packets in time order, as tshark lists them
    fields = subprocess.run(
        [tshark, "-n", "-r", str(shared_pcaps / ZMAP), "-Y", "ip.src==192.168.37.132",
         "-T", "fields", "-E", "occurrence=f", "-e", "ip.dst", "-e", "ip.id", "-e", "tcp.seq_raw",
         "-e", "tcp.dstport", "-e", "ip.ttl", "-e", "tcp.window_size_value"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n")[:4]
    want = [(d, int(i, 16), int(q), int(p), int(t), int(w))
            for d, i, q, p, t, w in (f.split("\t") for f in fields)]
    got = [(format_addr16(s["dst_ip"]), int(s["ip_id"]), int(s["tcp_seq"]), int(s["dst_port"]),
            int(s["ttl"]), int(s["tcp_window"])) for s in scanner]
    assert got == want
    assert {w[1] for w in want} == {54321}  # ZMap's fingerprint (DOMAIN.md section 4)


@pytest.mark.shared
def test_jsonl_output(shared_pcaps: Path, tmp_path: Path) -> None:
    jl = tmp_path / "out.jsonl"
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP), "--darknet", "128.0.0.0/1",
                     "--interval", "5", "--jsonl", str(jl))
    assert rc == 0
    batches = read_flows(out)
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    kinds = Counter(x["record"] for x in lines)
    assert kinds == {"interval": len(batches), "flow": sum(len(b.flows) for b in batches),
                     "sample": sum(len(b.samples) for b in batches)}
    assert lines[0]["record"] == "interval"
    assert lines[0]["interval_start"] == "2021-08-20T05:47:45Z"
    assert lines[0]["stats"] == dict(batches[0].stats)
    flow = lines[1]
    first = batches[0].flows[0]
    assert flow["src_ip"] == format_addr16(first["src_ip"])
    assert flow["packet_count"] == int(first["packet_count"])
    assert flow["slot_counts"] == [int(c) for c in first["slot_counts"]]
    assert flow["quoted_dst_ip"] is None
    assert flow["sensor"] == "test"
    sample = next(x for x in lines if x["record"] == "sample" and x["src_ip"] == "192.168.37.132")
    assert sample["ip_id"] == 54321 and sample["interval_start_ns"] == batches[0].interval_start_ns


@pytest.mark.shared
def test_replay_gives_identical_bytes(shared_pcaps: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    args = ["--pcap", str(shared_pcaps / ZMAP), "--darknet", "0.0.0.0/0", "--interval", "5"]
    assert sensor(a, *args)[0] == 0 and sensor(b, *args)[0] == 0
    assert (a / "out.flows").read_bytes() == (b / "out.flows").read_bytes()


@pytest.mark.shared
def test_captures_are_one_stream_in_the_order_given(shared_pcaps: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cap = str(shared_pcaps / ZMAP)
    rc, out = sensor(tmp_path, "--pcap", cap, cap, "--darknet", "0.0.0.0/0", "--interval", "5")
    assert rc == 0
    batches = read_flows(out)
    # the second copy goes back in time: whatever falls in closed 5 s intervals is late
    late = sum(b.stats["late_packets"] for b in batches)
    dark = sum(b.stats["dark_packets"] for b in batches)
    assert dark + late + sum(b.stats["not_ip_packets"] for b in batches) == 2 * 10055
    assert late > 0
    # the last 5 s interval (from 05:47:55) is still open when the copy starts: tshark -Y
    # 'frame.time_epoch >= 1629438475' lists 3 frames there (2 ARP, 1 IP), counted again
    assert dark == 10043 + 1
    assert late == 10055 - 1 - 2
    err = capsys.readouterr().err
    assert f"{cap} starts 12.934 s before the end of the previous capture" in err


@pytest.mark.shared
def test_summary_on_stderr(shared_pcaps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP), "--darknet", "128.0.0.0/1")
    assert rc == 0
    err = capsys.readouterr().err.splitlines()
    batch = read_flows(out)[0]
    assert err[0] == f"sensor: 1 capture(s), 10,055 packets, {batch.stats['dark_packets']:,} to the darknet"
    assert err[1] == f"sensor: dropped: outside {batch.stats['outside_packets']:,}, not_ip 12"
    assert err[2].startswith(f"sensor: {len(batch.flows):,} flows, {batch.stats['sources']} distinct sources")


@pytest.mark.shared
def test_settings_from_environment_and_flags(shared_pcaps: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKNET_IODEF_SENSOR_INTERVAL", "5")
    monkeypatch.setenv("DARKNET_IODEF_SENSOR_DARKNET", "0.0.0.0/0")
    monkeypatch.setenv("DARKNET_IODEF_SENSOR_SAMPLES_PER_SOURCE", "1")
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP))
    assert rc == 0
    batches = read_flows(out)
    assert {b.interval_ns for b in batches} == {5 * 10**9}
    assert sum(b.stats["samples"] for b in batches) == sum(b.stats["sources"] for b in batches)
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP), "--interval", "60")
    assert rc == 0 and {b.interval_ns for b in read_flows(out)} == {60 * 10**9}


@pytest.mark.shared
def test_unreadable_capture_is_one_line_and_leaves_no_output(
    shared_pcaps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("hello, not a capture\n")
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP), str(bad), "--darknet", "0.0.0.0/0")
    assert rc == 1
    assert capsys.readouterr().err.strip() == (
        f"darknet-iodef: {bad}: offset 0: not a pcap or pcapng file (magic number 68656c6c)")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["notes.pcap"]


def test_missing_capture_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = sensor(tmp_path, "--pcap", str(tmp_path / "nope.pcap"), "--darknet", "0.0.0.0/0")
    assert rc == 1
    assert capsys.readouterr().err.strip() == (
        f"darknet-iodef: {tmp_path / 'nope.pcap'}: cannot open: No such file or directory")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--darknet", "10.0.0.0/33"], "setting --darknet: '10.0.0.0/33' is not a CIDR prefix"),
        ([], "setting --darknet: no dark prefixes given"),
        (["--darknet", "10.0.0.0/8", "--interval", "soon"], "setting --interval: expected an integer"),
        (["--darknet", "10.0.0.0/8", "--samples-per-source", "1000"],
         "setting [sensor] samples_per_source: 1000 is not between 0 and 64"),
        (["--darknet", "10.0.0.0/8", "--reorder-slack", "60"],
         "setting [sensor] reorder_slack: 60.0 must be at least 0 and less than the interval (60 s)"),
    ],
)
def test_bad_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                             message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DARKNET_IODEF_SENSOR_DARKNET", raising=False)
    cap = tmp_path / "x.pcap"
    cap.write_bytes(b"")
    rc, _ = sensor(tmp_path, "--pcap", str(cap), *args)
    assert rc == 2
    assert capsys.readouterr().err.startswith(f"darknet-iodef: {message}")


@pytest.mark.shared
def test_corrupt_flow_file_names_the_offset(shared_pcaps: Path, tmp_path: Path) -> None:
    rc, out = sensor(tmp_path, "--pcap", str(shared_pcaps / ZMAP), "--darknet", "0.0.0.0/0",
                     "--interval", "5")
    assert rc == 0
    data = bytearray(out.read_bytes())
    first_len = int.from_bytes(data[:4], "little")
    second = 4 + first_len
    bad = bytearray(data)
    bad[second + 4 : second + 8] = b"XXXX"  # the second batch's magic
    path = tmp_path / "bad.flows"
    path.write_bytes(bytes(bad))
    with pytest.raises(RecordError) as err, open(path, "rb") as fh:
        list(read_batches(fh, str(path)))
    assert err.value.line() == f"{path}: offset {second}: not a flow batch (magic b'XXXX')"
    path.write_bytes(bytes(data[:-3]))
    with pytest.raises(RecordError, match=r"offset \d+: truncated flow batch"), open(path, "rb") as fh:
        list(read_batches(fh, str(path)))


@pytest.mark.shared
def test_console_script_and_builder_agree(shared_pcaps: Path, tmp_path: Path) -> None:
    """The installed command (a real process) writes what FlowBuilder returns in-process."""
    from darknet_iodef.addresses import DarkPrefixes
    from darknet_iodef.flowtuple import encode_batch
    from sensor.capture import iter_packet_batches
    from sensor.flows import FlowBuilder
    from sensor.settings import SensorSettings

    out = tmp_path / "cli.flows"
    proc = subprocess.run(
        [sys.executable, "-m", "darknet_iodef.cli", "sensor", "--pcap", str(shared_pcaps / ZMAP),
         "--darknet", "0.0.0.0/0", "--out", str(out), "--name", "x", "--interval", "5"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert proc.returncode == 0, proc.stderr
    b = FlowBuilder(DarkPrefixes.parse("0.0.0.0/0"), SensorSettings(interval=5), "x")
    batches = []
    for pk in iter_packet_batches(shared_pcaps / ZMAP, batch_size=1000):
        batches += b.push(pk)
    batches += b.flush()
    expect = b"".join(len(e).to_bytes(4, "little") + e for e in map(encode_batch, batches))
    assert out.read_bytes() == expect
    assert np.sum([len(x.flows) for x in batches]) == 10043


def test_settings_precedence_table_env_flags() -> None:
    from darknet_iodef.errors import ConfigError
    from darknet_iodef.settings import load
    from sensor.settings import SECTION, SensorSettings

    table = {"darknet": "198.18.0.0/15", "interval": 300, "samples_per_source": 2}
    env = {"DARKNET_IODEF_SENSOR_INTERVAL": "120", "DARKNET_IODEF_SENSOR_NAME": "env-name"}
    s = load(SensorSettings, SECTION, table, env, {"interval": "30", "name": None})
    assert (s.darknet, s.interval, s.samples_per_source, s.name) == ("198.18.0.0/15", 30, 2, "env-name")
    assert (s.interval_ns, s.reorder_slack_ns) == (30 * 10**9, 0)
    assert load(SensorSettings, SECTION, {}, {}, {}) == SensorSettings()
    with pytest.raises(ConfigError, match=r"\[sensor\] intervall: unknown setting"):
        load(SensorSettings, SECTION, {"intervall": 5}, {}, {})
    with pytest.raises(ConfigError, match="reorder_slack"):
        SensorSettings(interval=10, reorder_slack=10.0)
    with pytest.raises(ConfigError, match="name"):
        SensorSettings(name="x" * 256)


def test_sample_capture_against_the_generator_labels(repo_root: Path, tmp_path: Path) -> None:
    """pcaps/sample-darknet.pcap: every planted scanner's packets, first and last time as
    the generator's labels say, and its samples carry its tool's fingerprint (DOMAIN.md 4)."""
    import ipaddress

    capture = repo_root / "pcaps" / "sample-darknet.pcap"
    labels = json.loads((repo_root / "pcaps" / "sample-darknet.labels.json").read_text())
    rc, out = sensor(tmp_path, "--pcap", str(capture), "--darknet", ",".join(labels["darknet"]))
    assert rc == 0
    batches = read_flows(out)
    assert sum(b.stats["packets"] for b in batches) == labels["counts"]["packets"]
    assert sum(b.stats["not_ip_packets"] for b in batches) == labels["counts"]["non_ip"]
    packets: Counter[str] = Counter()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    samples: dict[str, list[np.void]] = {}
    per_interval: list[Counter[str]] = []
    for b in batches:
        per_interval.append(Counter())
        for r in b.flows:
            src = format_addr16(r["src_ip"])
            packets[src] += int(r["packet_count"])
            per_interval[-1][src] += int(r["packet_count"])
            first[src] = min(first.get(src, 1 << 63), int(r["first_ns"]))
            last[src] = max(last.get(src, 0), int(r["last_ns"]))
        for s in b.samples:
            samples.setdefault(format_addr16(s["src_ip"]), []).append(s)
    scanners = [e for e in labels["entities"] if e["role"] == "scanner"]
    assert len(scanners) == labels["counts"]["scanners"] == 27
    for e in scanners:
        src = e["src"]
        seen = (packets[src], first[src], last[src])
        assert seen == (e["packets"], e["first_ts_ns"], e["last_ts_ns"]), e["id"]
        probes = samples[src]
        # the first 4 of each interval, plus the first 4 with a payload
        with_payload = [s for s in probes if s["payload_len"]]
        assert len(probes) - len(with_payload) <= sum(min(4, c[src]) for c in per_interval) <= len(probes)
        assert len(probes) <= sum(min(8, c[src]) for c in per_interval), e["id"]
        for s in probes:
            dst = int(ipaddress.ip_address(format_addr16(s["dst_ip"])))
            if e["tool"] == "zmap" and e["variant"] == "":
                assert int(s["ip_id"]) == 54321, e["id"]
            if e["tool"] == "masscan" and e["protocol"] == "tcp":
                assert int(s["ip_id"]) == (dst ^ int(s["dst_port"]) ^ int(s["tcp_seq"])) & 0xFFFF, e["id"]
            if e["tool"] == "masscan" and e["protocol"] == "udp" and int(s["dst_port"]) in (53, 137, 161):
                cookie = int.from_bytes(s["payload_head"].tobytes()[:2] if s["dst_port"] != 161
                                        else s["payload_head"].tobytes()[17:19], "big")  # fmt: skip
                assert int(s["ip_id"]) == (dst ^ int(s["dst_port"]) ^ cookie) & 0xFFFF, e["id"]
            if e["tool"] == "mirai":
                assert int(s["tcp_seq"]) == dst, e["id"]


def test_jsonl_to_stdout_keeps_the_summary_on_stderr(repo_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    capture = repo_root / "pcaps" / "sample-darknet.pcap"
    rc, out = sensor(tmp_path, "--pcap", str(capture), "--darknet", "198.18.0.0/16,2001:2::/48",
                     "--jsonl", "-", "--samples-per-source", "0")
    assert rc == 0
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    batches = read_flows(out)
    assert [x["interval_start_ns"] for x in lines if x["record"] == "interval"] == [
        b.interval_start_ns for b in batches]
    assert sum(x["record"] == "flow" for x in lines) == sum(len(b.flows) for b in batches)
    assert not any(x["record"] == "sample" for x in lines)
    assert captured.err.startswith("sensor: 1 capture(s), 40,000 packets, ")
    distinct = {bytes(x) for b in batches for x in b.flows["src_ip"].tolist()}  # IPv4 and IPv6
    assert f", {len(distinct):,} distinct sources, " in captured.err


def test_big_intervals_are_cut_into_frames_of_the_same_interval(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sensor.sensor_cmd as cmd

    capture = str(repo_root / "pcaps" / "sample-darknet.pcap")
    args = ["--pcap", capture, "--darknet", "198.18.0.0/16,2001:2::/48"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = read_flows(sensor(tmp_path / "a", *args)[1])
    monkeypatch.setattr(cmd, "FILE_BATCH_MAX_BYTES", 200_000)
    cut = read_flows(sensor(tmp_path / "b", *args)[1])
    assert len(cut) > len(whole) == 6
    for w in whole:
        parts = [c for c in cut if c.interval_start_ns == w.interval_start_ns]
        assert all(len(p.flows) * 120 + len(p.samples) * 116 < 200_000 for p in parts)
        assert b"".join(p.flows.tobytes() for p in parts) == w.flows.tobytes()
        assert b"".join(p.samples.tobytes() for p in parts) == w.samples.tobytes()
        assert [dict(p.stats) for p in parts] == [dict(w.stats)] + [{}] * (len(parts) - 1)
