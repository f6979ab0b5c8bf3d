"""Highest packet rate the live sensor sustains without kernel drops, on this machine.

Method
------
1. A capture of N TCP SYN probes (60-byte frames, the bulk of darknet
   traffic; random sources, destinations in a /16, ports, sequence numbers,
   IP IDs) is built with numpy.
2. Two network namespaces joined by a veth pair are made (nothing can leave
   them). ``darknet-iodef sensor --interface`` runs in one (a separate
   process, as in production); ``tcpreplay --pps=R --loop=L`` replays the
   capture into the other end for about ``--seconds`` seconds.
3. After the replay the sensor gets SIGTERM; its summary line gives the
   kernel's PACKET_STATISTICS (packets, drops) and the frames it decoded.
   A rate passes when the kernel dropped nothing and every frame sent was
   decoded.
4. First a --topspeed trial shows how fast tcpreplay can push on this
   host; the rate is then bisected between a passing and a failing rate.
   The same top-speed trial runs with the libpcap fallback for comparison.

Caveat, printed with the result: tcpreplay and the kernel's veth delivery
(softirq) compete with the sensor for this machine's cores, so the figure is
a lower bound of what the sensor does on a real NIC with the cores to itself;
the rate tcpreplay actually achieved (its "Rated:" line) is what is
reported, not the rate asked for.

Run as root: ``python -m bench.bench_live [--packets 200000] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sensor.live_netns import VethPair, veth_pair  # noqa: E402

DARKNET = "10.99.0.0/16"


def write_syn_capture(path: Path, n: int, seed: int = 1) -> None:
    """n Ethernet/IPv4/TCP SYN frames (60 bytes with padding), pcap with ns stamps."""
    rng = np.random.default_rng(seed)
    f = np.zeros((n, 60), np.uint8)
    f[:, 0:6] = [0x02, 0, 0, 0, 0, 1]
    f[:, 6:12] = [0x02, 0, 0, 0, 0, 2]
    f[:, 12:14] = [0x08, 0x00]
    f[:, 14] = 0x45
    f[:, 16:18] = [0, 40]  # total length
    f[:, 18:20] = rng.integers(0, 256, (n, 2), dtype=np.uint8)  # IP ID
    f[:, 22] = rng.choice(np.array([64, 255, 49], np.uint8), n)  # TTL
    f[:, 23] = 6
    src = rng.integers(1 << 24, 224 << 24, n, dtype=np.uint64).astype(">u4")
    dst = ((10 << 24) | (99 << 16) | rng.integers(0, 1 << 16, n)).astype(">u4")
    f[:, 26:30] = src.view(np.uint8).reshape(n, 4)
    f[:, 30:34] = dst.view(np.uint8).reshape(n, 4)
    words = f[:, 14:34].astype(np.uint32).reshape(n, 10, 2)
    s = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    f[:, 24:26] = (~s & 0xFFFF).astype(">u2").view(np.uint8).reshape(n, 2)
    f[:, 34:36] = rng.integers(1024, 65536, n).astype(">u2").view(np.uint8).reshape(n, 2)
    ports = np.array([22, 23, 80, 443, 445, 2323, 3389, 8080], ">u2")
    f[:, 36:38] = rng.choice(ports, n).view(np.uint8).reshape(n, 2)
    f[:, 38:42] = rng.integers(0, 256, (n, 4), dtype=np.uint8)  # seq
    f[:, 46] = 0x50
    f[:, 47] = 0x02  # SYN
    f[:, 48:50] = [0x04, 0x00]  # window 1024 (TCP checksum left 0: nobody checks it here)
    rec = np.zeros((n, 16), np.uint8)
    ts = 1_700_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 1000
    rec[:, 0:4] = (ts // 10**9).astype("<u4").view(np.uint8).reshape(n, 4)
    rec[:, 4:8] = (ts % 10**9).astype("<u4").view(np.uint8).reshape(n, 4)
    rec[:, 8:12] = np.array([60, 0, 0, 0], np.uint8)
    rec[:, 12:16] = np.array([60, 0, 0, 0], np.uint8)
    with path.open("wb") as fh:
        fh.write(
            np.array([0xA1B23C4D], "<u4").tobytes()
            + bytes.fromhex("02000400")
            + bytes(8)
            + np.array([262144, 1], "<u4").tobytes()
        )
        fh.write(np.hstack([rec, f]).tobytes())


@dataclass
class Trial:
    asked: str
    achieved_pps: float
    sent: int
    frames: int
    kernel_packets: int
    drops: int

    @property
    def ok(self) -> bool:
        return self.drops == 0 and self.frames == self.sent


def trial(
    pair: VethPair, capture: Path, n: int, pps: int | None, seconds: float, method: str, workdir: Path
) -> Trial:
    out = workdir / "flows.bin"
    cmd = [
        "ip",
        "netns",
        "exec",
        pair.cap_ns,
        sys.executable,
        "-m",
        "darknet_iodef.cli",
        "sensor",
        "--interface",
        pair.cap_if,
        "--darknet",
        DARKNET,
        "--out",
        str(out),
        "--name",
        "bench",
        "--capture-method",
        method,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "Capturing on" in line:
            break
    loops = max(1, math.ceil((pps or 1_000_000) * seconds / n))
    rate = ["--topspeed"] if pps is None else [f"--pps={pps}"]
    rep = subprocess.run(
        pair.send_cmd("tcpreplay", *rate, f"--loop={loops}", "-i", pair.send_if, str(capture)),
        capture_output=True,
        text=True,
    )
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or "kernel:" not in err:
        raise RuntimeError(f"the sensor failed (exit {proc.returncode}):\n{err[-3000:]}")
    sent = int(re.search(r"Actual: (\d+) packets", rep.stdout).group(1))  # type: ignore[union-attr]
    rated = float(re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", rep.stdout).group(1))  # type: ignore[union-attr]
    frames = int(re.search(r"\(\w+\): ([\d,]+) frames", err).group(1).replace(",", ""))  # type: ignore[union-attr]
    km = re.search(r"kernel: ([\d,]+) packets, ([\d,]+) dropped", err)
    assert km, err
    return Trial(
        "topspeed" if pps is None else f"{pps}",
        rated,
        sent,
        frames,
        int(km.group(1).replace(",", "")),
        int(km.group(2).replace(",", "")),
    )


@dataclass
class Drain:
    method: str
    frames: int
    drops: int
    seconds: float
    cpu_seconds: float  # the process's CPU time: what the agent costs, whatever else runs

    @property
    def pps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.frames / self.cpu_seconds if self.cpu_seconds else 0.0


def drain_trial(pair: VethPair, capture: Path, n: int, method: str, archive: str = "") -> Drain:
    """Fill the capture buffer while nobody reads, then time the agent emptying it.

    This measures the consumer alone -- block walk, decode, flow folding --
    on a core of its own (the sender is idle by then): the rate the agent
    can sustain, which tcpreplay on this host cannot reach.
    """
    from prometheus_client import CollectorRegistry

    from darknet_iodef.addresses import DarkPrefixes
    from darknet_iodef.metrics import LiveMetrics, SensorMetrics
    from darknet_iodef.settings import load
    from sensor.flows import FlowBuilder
    from sensor.live.agent import _Loop, open_capture  # the agent's own loop, driven by hand
    from sensor.live.settings import LiveSettings
    from sensor.settings import SensorSettings
    from tests.sensor.live_netns import enter_netns

    table = {"method": method, "block_size": 1 << 21, "block_count": 160, "block_timeout_ms": 2000,
             "archive_dir": archive}
    live = load(LiveSettings, "live", table, environ={})
    settings = load(SensorSettings, "sensor", {"darknet": DARKNET}, environ={})
    with enter_netns(pair.cap_ns):
        cap, used = open_capture(pair.cap_if, live)
    try:
        loops = max(1, n // 200_000)
        subprocess.run(
            pair.send_cmd("tcpreplay", "--topspeed", f"--loop={loops}", "-i", pair.send_if, str(capture)),
            capture_output=True,
            check=True,
        )
        time.sleep(2.5)  # every block retired (2 s block timeout) before the clock starts
        reg = CollectorRegistry()
        loop = _Loop(
            cap,
            used,
            FlowBuilder(DarkPrefixes.parse(DARKNET), settings, "bench"),
            live,
            lambda b: None,
            SensorMetrics.create(reg),
            LiveMetrics.create(reg),
            0,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        while loop.step(0.05) > 0:
            pass
        loop.emit(loop.builder.flush())
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = cap.stats()
    finally:
        cap.close()
    if loop.archive is not None:
        loop.archive.close()
        used += " + archive"
    return Drain(used, loop.frames, st.drops, seconds, cpu)


def walk_compare(pair: VethPair, capture: Path) -> tuple[int, float, float]:
    """The block walk on the same retired blocks: proved guess vs following the chain.

    Returns (frames, ns per frame guessed, ns per frame followed), best of 5.
    """
    from sensor.live.frames import walk_blocks
    from sensor.live.ring import PacketRing
    from tests.sensor.live_netns import enter_netns

    with enter_netns(pair.cap_ns):
        ring = PacketRing(pair.cap_if, 1 << 20, 64, 2000)
    try:
        subprocess.run(pair.send_cmd("tcpreplay", "--topspeed", "-i", pair.send_if, str(capture)),
                       capture_output=True, check=True)
        time.sleep(2.2)
        n = len(ring.take(64))
        starts = list(ring._held)  # the blocks just taken, still ours
        best = {True: math.inf, False: math.inf}
        for _ in range(5):
            for fast in (True, False):
                t0 = time.perf_counter()
                walk_blocks(ring._ring, starts, ring.block_size, 1, fast=fast)
                best[fast] = min(best[fast], time.perf_counter() - t0)
        ring.release()
    finally:
        ring.close()
    return n, best[True] / n * 1e9, best[False] / n * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000, help="frames in the replayed capture")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each trial")
    ap.add_argument("--steps", type=int, default=6, help="bisection steps")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("tcpreplay"):
        print("bench_live needs root (network namespaces) and tcpreplay", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, veth_pair() as pair:
        work = Path(tmp)
        cap = work / "syn.pcap"
        write_syn_capture(cap, args.packets)
        print(
            f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
            f"capture: {args.packets:,} SYN frames of 60 bytes; "
            f"{args.seconds:.0f} s per trial; default ring (64 x 1 MiB, 100 ms block timeout)"
        )

        def show(t: Trial, method: str) -> None:
            print(
                f"  {method:8s} asked {t.asked:>9s} pps  achieved {t.achieved_pps:>10,.0f} pps  "
                f"sent {t.sent:>9,}  decoded {t.frames:>9,}  kernel drops {t.drops:>8,}  "
                f"{'ok' if t.ok else 'DROPS'}"
            )

        top = trial(pair, cap, args.packets, None, args.seconds, "ring", work)
        show(top, "ring")
        lib = trial(pair, cap, args.packets, None, args.seconds, "libpcap", work)
        show(lib, "libpcap")
        best = top if top.ok else None
        if not top.ok:
            lo, hi = 0, int(top.achieved_pps)
            for _ in range(args.steps):
                mid = (lo + hi) // 2
                t = trial(pair, cap, args.packets, mid, args.seconds, "ring", work)
                show(t, "ring")
                if t.ok:
                    lo, best = mid, t
                else:
                    hi = mid
        print("drain (consumer alone: the buffer is filled first, then the agent empties it):")
        fill = max(1, 2_000_000 // args.packets) * args.packets
        drains = [drain_trial(pair, cap, fill, m) for m in ("ring", "libpcap")]
        drains.append(drain_trial(pair, cap, fill, "ring", archive=str(work / "archive")))
        for d in drains:
            print(f"  {d.method:16s} {d.frames:>9,} frames in {d.seconds:6.2f} s wall = {d.pps:>10,.0f} pps; "
                  f"{d.cpu_seconds:6.2f} s CPU = {d.per_cpu_second:>10,.0f} frames per CPU second"
                  f"  (kernel drops while filling: {d.drops:,})")
        print(f"  ring / libpcap (frames per CPU second): "
              f"{drains[0].per_cpu_second / drains[1].per_cpu_second:.2f}x")
        n, guessed, followed = walk_compare(pair, cap)
        print(f"block walk (CPU time, best of 5) over the same {n:,} frames: proved guess "
              f"{guessed:.0f} ns/frame, following the "
              f"chain {followed:.0f} ns/frame ({followed / guessed:.1f}x)")
        print()
        if best is None:
            print("result: no rate tried was free of drops")
        elif best is top:
            print(
                f"result: the ring sustained tcpreplay's top speed, {top.achieved_pps:,.0f} pps "
                f"({top.sent:,} frames, 0 drops); the sensor's own limit is higher than this rig can send"
            )
        else:
            print(
                f"result: highest rate without kernel drops (ring): {best.achieved_pps:,.0f} pps "
                f"(bisected; {top.achieved_pps:,.0f} pps at top speed dropped {top.drops:,})"
            )
        print(
            f"libpcap fallback at top speed: {lib.achieved_pps:,.0f} pps offered, {lib.drops:,} dropped "
            f"of {lib.kernel_packets:,} ({'ok' if lib.ok else 'drops'})"
        )
        print(
            "note: tcpreplay and the veth softirq share the host's cores with the sensor: "
            "a lower bound for a dedicated NIC"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
