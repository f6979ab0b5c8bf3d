"""Live capture end to end, in network namespaces made by the test (root; CI is root).

A capture made here (``live_traffic.py``) is replayed with tcpreplay into a
veth pair between two fresh namespaces; the agent captures on the other end.
The flow summaries must equal what the file path (``iter_packet_batches`` +
``FlowBuilder``) computes from the same file -- except timestamps: the agent
stamps packets with the kernel's receive time (event time of the live
sensor), not the file's. So we compare every flow field but ``first_ns``,
``last_ns`` and ``slot_counts`` (which follow from the timestamps), summed
over intervals, and the samples without ``ts_ns``; with a day-long interval
both sides put everything in one interval, so the per-source samples (the
first probes in time order) are the same probes: tcpreplay sends in file
order and the kernel stamps in arrival order. The evidence archive written
during the capture is then read back by the file path and must give the
live flows exactly, timestamps included.

Network: nothing leaves the two namespaces; they have no addresses or routes.
"""

from __future__ import annotations

import collections
import errno
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.errors import ConfigError
from darknet_iodef.flowtuple import FlowBatch, read_batches
from darknet_iodef.metrics import LiveMetrics, SensorMetrics
from darknet_iodef.settings import load
from sensor.capture import iter_packet_batches
from sensor.flows import FlowBuilder
from sensor.live.agent import LiveSummary, run_live
from sensor.live.archive import RotatingPcapWriter
from sensor.live.ring import PacketRing, RingUnavailable
from sensor.live.settings import LiveSettings
from sensor.settings import SensorSettings
from tests.sensor.live_netns import VethPair, enter_netns, veth_pair
from tests.sensor.live_traffic import DARKNET, write_capture

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

_TIME_FIELDS = ("first_ns", "last_ns", "slot_counts", "packet_count")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("live") / "darknet.pcap"
    return path, write_capture(path)


@pytest.fixture()
def veth() -> Iterator[VethPair]:
    with veth_pair() as pair:
        yield pair


def _settings() -> SensorSettings:
    return load(SensorSettings, "sensor", {"darknet": DARKNET, "interval": 86400}, environ={})


def _from_file(path: Path) -> list[FlowBatch]:
    fb = FlowBuilder(DarkPrefixes.parse(DARKNET), _settings(), "test")
    out: list[FlowBatch] = []
    for packets in iter_packet_batches(path, 1000):
        out += fb.push(packets)
    return out + fb.flush()


def _flow_totals(batches: list[FlowBatch], with_time: bool = False) -> dict[tuple[Any, ...], int]:
    names = [n for n in batches[0].flows.dtype.names or () if with_time or n not in _TIME_FIELDS]
    if with_time:
        names.remove("packet_count")
    totals: dict[tuple[Any, ...], int] = collections.Counter()
    for b in batches:
        for row in b.flows:
            totals[tuple(np.asarray(row[n]).tobytes() for n in names)] += int(row["packet_count"])
    return dict(totals)


def _samples(batches: list[FlowBatch]) -> list[bytes]:
    rows = []
    for b in batches:
        s = b.samples.copy()
        s["ts_ns"] = 0
        rows += [r.tobytes() for r in s]
    return sorted(rows)


def _stats(batches: list[FlowBatch]) -> dict[str, int]:
    total: dict[str, int] = collections.Counter()
    for b in batches:
        total.update(b.stats)
    return dict(total)


def _capture(
    veth: VethPair, live: LiveSettings, send: list[list[str]], registry: CollectorRegistry | None = None
) -> tuple[LiveSummary, list[FlowBatch]]:
    """Run the agent in the capture namespace while ``send`` commands run in the other."""
    batches: list[FlowBatch] = []
    stop, ready = threading.Event(), threading.Event()
    result: dict[str, Any] = {}
    reg = registry if registry is not None else CollectorRegistry()

    def agent() -> None:
        try:
            with enter_netns(veth.cap_ns):
                result["summary"] = run_live(veth.cap_if, DarkPrefixes.parse(DARKNET), _settings(), live,
                                             batches.append, sensor_name="test", stop=stop, ready=ready,
                                             handle_signals=False, metrics=SensorMetrics.create(reg),
                                             lmetrics=LiveMetrics.create(reg))
        except BaseException as exc:
            result["error"] = exc
            ready.set()

    t = threading.Thread(target=agent)
    t.start()
    try:
        assert ready.wait(20)
        for argv in send:
            subprocess.run(veth.send_cmd(*argv), check=True, capture_output=True, timeout=60)
    finally:
        stop.set()  # the agent takes what the kernel retires within one block timeout, then flushes
        t.join(30)
    if "error" in result:
        raise result["error"]
    return result["summary"], batches


def _replay(path: Path, veth: VethPair) -> list[str]:
    return ["tcpreplay", "-q", "--topspeed", "-i", veth.send_if, str(path)]


def _live(**kw: Any) -> LiveSettings:
    base = {"block_size": 1 << 16, "block_count": 32, "block_timeout_ms": 50}
    return load(LiveSettings, "live", {**base, **kw}, environ={})


def test_ring_flows_equal_file_flows_and_archive_replays_them(
    capture: tuple[Path, dict[str, int]], veth: VethPair, tmp_path: Path
) -> None:
    path, kinds = capture
    sent = sum(kinds.values())
    reg = CollectorRegistry()
    summary, live = _capture(veth, _live(archive_dir=str(tmp_path / "arch"), archive_rotate_bytes=100_000),
                             [_replay(path, veth)], reg)
    assert summary.method == "ring" and summary.linktype == 1
    assert summary.frames == sent
    assert (summary.kernel_packets, summary.kernel_drops) == (sent, 0)
    label = {"interface": veth.cap_if}
    assert reg.get_sample_value("darknet_sensor_kernel_packets_total", label) == sent
    assert reg.get_sample_value("darknet_sensor_kernel_drops_total", label) == 0
    assert reg.get_sample_value("darknet_sensor_received_packets_total") == sent
    assert reg.get_sample_value("darknet_sensor_dropped_packets_total", {"reason": "not_ip"}) == kinds["arp"]
    assert reg.get_sample_value("darknet_sensor_archive_files_total", label) == summary.archive_files
    from_file = _from_file(path)
    assert len(live) == len(from_file) == 1
    assert _flow_totals(live) == _flow_totals(from_file)
    assert _samples(live) == _samples(from_file)
    assert _stats(live) == _stats(from_file)
    assert _stats(live)["packets"] == sent and _stats(live)["not_ip_packets"] == kinds["arp"]
    # 802.1Q tags the kernel stripped are back in the flows (vlan 42..44)
    assert sorted({int(v) for v in live[0].flows["vlan"]}) == [0, 42, 43, 44]
    # the archive: several rotated, complete pcaps that give the same flows, timestamps included
    files = sorted((tmp_path / "arch").iterdir())
    assert len(files) == summary.archive_files >= 2 and all(f.suffix == ".pcap" for f in files)
    replayed = []
    fb = FlowBuilder(DarkPrefixes.parse(DARKNET), _settings(), "test")
    for f in files:
        for packets in iter_packet_batches(f):
            replayed += fb.push(packets)
    replayed += fb.flush()
    assert _flow_totals(replayed, with_time=True) == _flow_totals(live, with_time=True)


def test_bpf_filter_and_snaplen_run_in_the_kernel(
    capture: tuple[Path, dict[str, int]], veth: VethPair, tmp_path: Path
) -> None:
    path, kinds = capture
    live_settings = _live(bpf="udp and not ip6", snaplen=64, archive_dir=str(tmp_path))
    summary, live = _capture(veth, live_settings, [_replay(path, veth)])
    # libpcap's "udp" is IP protocol 17: the probes and both fragments of each pair
    udp = kinds["udp"] + kinds["frag"]
    assert summary.frames == summary.kernel_packets == udp
    assert _stats(live)["packets"] == udp
    assert {int(p) for p in live[0].flows["protocol"]} == {17}
    # the filter's return value is the snap length: frames cut to 64 bytes, wire length kept
    (archived,) = tmp_path.iterdir()
    packets = np.concatenate(list(iter_packet_batches(archived)))
    assert packets.shape[0] == udp
    assert int(packets["cap_len"].max()) == 64
    assert int(packets["wire_len"].max()) == 14 + 20 + 8 + 59


def test_libpcap_fallback_captures_the_same_flows(
    capture: tuple[Path, dict[str, int]], veth: VethPair
) -> None:
    path, kinds = capture
    summary, live = _capture(veth, _live(method="libpcap"), [_replay(path, veth)])
    assert summary.method == "libpcap"
    assert summary.frames == sum(kinds.values())
    from_file = _from_file(path)
    assert _flow_totals(live) == _flow_totals(from_file)
    assert _samples(live) == _samples(from_file)


def _caps_only(caps: str) -> list[str]:
    """A command prefix that leaves the process only ``caps`` (e.g. ``+net_raw,+net_admin``)."""
    return ["setpriv", "--no-new-privs", "--inh-caps=-all", f"--bounding-set=-all,{caps}", "--"]


def _sensor_cmd(veth: VethPair, out: Path) -> list[str]:
    return [sys.executable, "-m", "darknet_iodef.cli", "sensor", "--interface", veth.cap_if,
            "--darknet", DARKNET, "--interval", "86400", "--name", "test", "--out", str(out),
            "--ring-block-size", "65536", "--ring-blocks", "16", "--block-timeout", "50"]


def test_without_cap_net_raw_the_sensor_says_what_it_needs(
    veth: VethPair, tmp_path: Path, repo_root: Path
) -> None:
    cmd = ["ip", "netns", "exec", veth.cap_ns, *_caps_only("+net_admin"), *_sensor_cmd(veth, tmp_path / "x")]
    res = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"darknet-iodef: setting interface: capturing on '{veth.cap_if}' needs CAP_NET_RAW "
        "(see docs/live-capture.md)")


def test_sensor_command_flushes_the_open_interval_on_sigterm(
    capture: tuple[Path, dict[str, int]], veth: VethPair, tmp_path: Path, repo_root: Path
) -> None:
    """Also: the sensor needs no capability but CAP_NET_RAW (the systemd unit's only one).

    It runs under ``setpriv`` with a bounding set of just that, so the process
    (uid 0 here, a dedicated user in production) holds nothing else -- and
    still puts the interface in promiscuous mode: a packet socket's
    PACKET_MR_PROMISC membership needs no CAP_NET_ADMIN.
    """
    path, kinds = capture
    out = tmp_path / "flows.bin"
    cmd = ["ip", "netns", "exec", veth.cap_ns, *_caps_only("+net_raw"), *_sensor_cmd(veth, out)]
    proc = subprocess.Popen(cmd, cwd=repo_root, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # wait until the capture is open
            lines.append(line)
            if "Capturing on" in line:
                break
        flags_file = f"/sys/class/net/{veth.cap_if}/flags"
        flags = subprocess.run(["ip", "netns", "exec", veth.cap_ns, "cat", flags_file],
                               capture_output=True, text=True, check=True).stdout
        assert int(flags, 16) & 0x100  # IFF_PROMISC while capturing
        subprocess.run(veth.send_cmd(*_replay(path, veth)), check=True, capture_output=True, timeout=60)
        proc.send_signal(signal.SIGHUP)  # the sensor has nothing to reload; it says so and goes on
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(lines) + rest
    assert proc.returncode == 0, log
    assert "SIGHUP: reloading" in log and "nothing to reload" in log
    assert f"{sum(kinds.values()):,} frames" in log and "0 dropped" in log
    with out.open("rb") as fh:
        batches = list(read_batches(fh, str(out)))
    assert len(batches) == 1  # the interval was still open: SIGTERM flushed it
    assert _flow_totals(batches) == _flow_totals(_from_file(path))


def test_kernel_counts_drops_when_the_ring_is_full(
    capture: tuple[Path, dict[str, int]], veth: VethPair
) -> None:
    path, kinds = capture
    sent = sum(kinds.values())
    with enter_netns(veth.cap_ns):
        ring = PacketRing(veth.cap_if, 4096, 2, 10)
    try:
        # nobody reads: two 4 KiB blocks hold a few dozen frames, the kernel drops the rest
        subprocess.run(veth.send_cmd(*_replay(path, veth)), check=True, capture_output=True, timeout=60)
        time.sleep(0.1)
        kept = 0
        while ring.wait(0.05):
            kept += len(ring.take(2))
            ring.release()
        st = ring.stats()
    finally:
        ring.close()
    assert st.packets == sent  # tp_packets counts the drops too
    assert 0 < kept < 100
    assert st.drops == sent - kept
    assert st.freeze_q_cnt >= 1


def test_a_quiet_link_still_closes_its_interval(capture: tuple[Path, dict[str, int]], veth: VethPair) -> None:
    """No packet after the replay: the idle tick moves event time on, and the interval closes.

    With 1 s intervals the batches come out while the agent still runs (before
    stop), each the same as the file path's flows for that interval's packets.
    """
    path, kinds = capture
    batches: list[FlowBatch] = []
    stop, ready = threading.Event(), threading.Event()
    settings = load(SensorSettings, "sensor", {"darknet": DARKNET, "interval": 1}, environ={})
    result: dict[str, Any] = {}

    def agent() -> None:
        with enter_netns(veth.cap_ns):
            result["summary"] = run_live(veth.cap_if, DarkPrefixes.parse(DARKNET), settings, _live(),
                                         batches.append, stop=stop, ready=ready, handle_signals=False)

    t = threading.Thread(target=agent)
    t.start()
    try:
        assert ready.wait(20)
        subprocess.run(veth.send_cmd(*_replay(path, veth)), check=True, capture_output=True, timeout=60)
        for _ in range(100):  # the interval closes ~1 s (its end) + 0.05 s + 1 s (margin) later
            if sum(b.stats["packets"] for b in batches) == sum(kinds.values()):
                break
            time.sleep(0.1)
        before_stop = list(batches)
    finally:
        stop.set()
        t.join(30)
    assert sum(b.stats["packets"] for b in before_stop) == sum(kinds.values())
    assert len(batches) == len(before_stop)  # nothing was left for the final flush
    assert _flow_totals(before_stop) == _flow_totals(_from_file(path))


def test_a_fanout_group_shares_the_packets(capture: tuple[Path, dict[str, int]], veth: VethPair) -> None:
    """Two rings in one PACKET_FANOUT hash group: each frame reaches exactly one of them."""
    path, kinds = capture
    with enter_netns(veth.cap_ns):
        rings = [PacketRing(veth.cap_if, 1 << 16, 64, 10, fanout_group=77) for _ in range(2)]
    try:
        subprocess.run(veth.send_cmd(*_replay(path, veth)), check=True, capture_output=True, timeout=60)
        time.sleep(0.1)
        got = []
        for ring in rings:
            n = 0
            while ring.wait(0.05):
                n += len(ring.take(64))
                ring.release()
            got.append(n)
        stats = [ring.stats() for ring in rings]
    finally:
        for ring in rings:
            ring.close()
    assert sum(got) == sum(kinds.values()) and min(got) > 0
    assert [s.packets for s in stats] == got and all(s.drops == 0 for s in stats)


def test_where_the_ring_cannot_be_used_the_agent_falls_back_to_libpcap_and_says_so(
    capture: tuple[Path, dict[str, int]], veth: VethPair, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    path, kinds = capture

    def no_ring(*_args: object, **_kw: object) -> PacketRing:
        raise RingUnavailable("TPACKET_V3 refused: Invalid argument")  # as on a kernel without V3

    monkeypatch.setattr("sensor.live.agent.PacketRing", no_ring)
    with caplog.at_level(logging.WARNING, logger="sensor.live.agent"):
        summary, _ = _capture(veth, _live(), [_replay(path, veth)])
    assert summary.method == "libpcap" and summary.frames == sum(kinds.values())
    assert ("The AF_PACKET ring cannot be used (TPACKET_V3 refused: Invalid argument); falling back to "
            "libpcap, which is several times slower.") in caplog.messages
    with pytest.raises(ConfigError, match="the AF_PACKET ring cannot be used"):
        _capture(veth, _live(method="ring"), [])


def test_a_failing_archive_disk_stops_the_archive_not_the_capture(
    capture: tuple[Path, dict[str, int]], veth: VethPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    path, kinds = capture

    def full_disk(self: RotatingPcapWriter, batch: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RotatingPcapWriter, "write", full_disk)
    with caplog.at_level(logging.ERROR, logger="sensor.live.agent"):
        summary, live = _capture(veth, _live(archive_dir=str(tmp_path)), [_replay(path, veth)])
    expected = f"The pcap archive in {tmp_path} failed (No space left on device); capturing on without it."
    assert expected in caplog.messages
    assert summary.frames == sum(kinds.values())
    assert _flow_totals(live) == _flow_totals(_from_file(path))
