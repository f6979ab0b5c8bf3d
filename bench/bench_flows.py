"""Flow builder throughput: packets folded per second, beside the alternatives, in one run.

    python bench/bench_flows.py [--packets 2000000] [--batch 65536]

Three traffic shapes over 5 minutes of event time, all to a /16 darknet:
  scan    2,000 scanners probing random dark addresses (a telescope's usual mix:
          about one tuple per packet, few sources)
  flood   a randomly spoofed SYN flood's backscatter view: every packet a new
          source (the worst case for samples: K=4 rows kept per source)
  repeat  200 sources sending the same few tuples again and again (grouping
          shrinks each batch a lot)
  payload the scan shape as UDP probes that all carry a payload (DNS queries):
          the builder's second sample selection (first K with a payload) on
          every packet

For each: FlowBuilder.push (flows + samples, the real work), the same without
samples (K=0), and the alternatives for the grouping step on the same keys:
``np.unique(..., return_inverse=True)`` on the 120-byte flow records and a
pure-Python dict fold (on a slice, extrapolated). Prints packets per second
and ratios, timed in CPU seconds of the process (wall time on a shared
machine measures the neighbours); nothing is asserted (speed goes in the
README and docs/flows.md, not in tests).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darknet_iodef.addresses import DarkPrefixes
from sensor.fields import LAYER_IP, LAYER_TRANSPORT, PACKET_DTYPE
from sensor.flows import FlowBuilder
from sensor.flows_fold import fold
from sensor.flows_rows import flow_rows
from sensor.settings import SensorSettings

T0 = 1_700_000_040 * 10**9
DARK = DarkPrefixes.parse("198.18.0.0/16")


def make_packets(shape: str, n: int, seed: int = 1) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(seed)
    pk = np.zeros(n, dtype=PACKET_DTYPE)
    pk["ts_ns"] = T0 + np.sort(rng.integers(0, 300 * 10**9, n))
    pk["layers"] = LAYER_IP | LAYER_TRANSPORT
    pk["ip_version"] = 4
    pk["protocol"] = 6
    pk["ip_len"] = 40
    pk["tcp_hdr_len"] = 20
    pk["dst_ip4"] = 0xC6120000 + rng.integers(0, 1 << 16, n)
    if shape in ("scan", "payload"):
        scanners = rng.integers(0x01000000, 0xDF000000, 2000)
        who = rng.integers(0, 2000, n)
        pk["src_ip4"] = scanners[who]
        pk["ttl"] = 30 + who % 30
        pk["dst_port"] = rng.choice([22, 23, 80, 443, 445, 3389, 8080], n)
        pk["src_port"] = 40000 + who
        pk["tcp_flags"] = 0x02
        pk["tcp_window"] = 1024
        pk["ip_id"] = rng.integers(0, 1 << 16, n)
        pk["tcp_seq"] = rng.integers(0, 1 << 32, n)
        if shape == "payload":
            pk["protocol"] = 17
            for tcp_field in ("tcp_flags", "tcp_window", "tcp_hdr_len", "tcp_seq"):
                pk[tcp_field] = 0
            pk["dst_port"] = 53
            pk["ip_len"] = 68
            pk["payload_len"], pk["payload_cap"] = 40, 24
            head = np.zeros((n, 24), dtype=np.uint8)
            head[:, :2] = rng.integers(0, 256, (n, 2), dtype=np.uint8)  # the DNS transaction ID
            head[:, 2:6] = (0x01, 0x00, 0x00, 0x01)
            pk["payload_head"] = head.view("V24")[:, 0]
    elif shape == "flood":
        pk["src_ip4"] = rng.integers(0x01000000, 0xDF000000, n)
        pk["ttl"] = rng.integers(40, 250, n)
        pk["src_port"] = 80
        pk["dst_port"] = rng.integers(1024, 65536, n)
        pk["tcp_flags"] = 0x12
        pk["tcp_seq"] = rng.integers(0, 1 << 32, n)
    else:  # repeat
        who = rng.integers(0, 200, n)
        pk["src_ip4"] = 0x0A000000 + who
        pk["dst_ip4"] = 0xC6120000 + who % 7
        pk["ttl"] = 64
        pk["src_port"] = 53
        pk["dst_port"] = 1000 + who % 3
        pk["protocol"] = 17
    return pk


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process: on a shared machine wall time mostly measures the neighbours."""
    t = time.process_time()
    fn()
    return time.process_time() - t


def run_builder(pk: npt.NDArray[np.void], batch: int, k: int) -> tuple[float, int]:
    b = FlowBuilder(DARK, SensorSettings(samples_per_source=k), "bench")
    flows = 0
    t = time.process_time()
    for i in range(0, pk.shape[0], batch):
        for fb in b.push(pk[i : i + batch]):
            flows += fb.flows.shape[0]
    for fb in b.flush():
        flows += fb.flows.shape[0]
    return time.process_time() - t, flows


def python_fold(pk: npt.NDArray[np.void]) -> dict[tuple[int, ...], int]:
    counts: dict[tuple[int, ...], int] = {}
    cols = [
        pk[n].tolist()
        for n in (
            "src_ip4",
            "dst_ip4",
            "src_port",
            "dst_port",
            "protocol",
            "ttl",
            "tcp_flags",
            "ip_len",
            "tcp_window",
            "tcp_hdr_len",
        )
    ]
    for key in zip(*cols, strict=True):
        counts[key] = counts.get(key, 0) + 1
    return counts


def bench_shape(shape: str, n: int, batch: int, python_slice: int) -> None:
    pk = make_packets(shape, n)
    secs, flows = run_builder(pk, batch, 4)
    base = n / secs
    rows = [("FlowBuilder.push, K=4 samples", secs)]
    rows.append(("FlowBuilder.push, no samples", run_builder(pk, batch, 0)[0]))
    # the grouping step alone, per batch, on the same keys
    one = [pk[i : i + batch] for i in range(0, n, batch)]
    keys = [flow_rows(p, p["ts_ns"], np.zeros(p.shape[0], np.intp)) for p in one]
    rows.append(("group: hash + sort (flows_fold.fold)", timed(lambda: [fold(k) for k in keys])))
    # np.unique needs the key alone: the flow rows with the values zeroed
    bare = [k.copy() for k in keys]
    for k in bare:
        for name in ("first_ns", "last_ns", "packet_count", "slot_counts"):
            k[name] = 0
    rows.append(("group: np.unique(rows, return_inverse)",
                 timed(lambda: [np.unique(k, return_inverse=True) for k in bare])))
    m = min(python_slice, n)
    head = pk[:m]
    py = timed(lambda: python_fold(head)) * n / m
    rows.append((f"group: Python dict ({m:,} slice, extrapolated)", py))
    for what, s in rows:
        print(f"{shape:7} {what:48} {s:8.3f} {n / s:12,.0f} {base / (n / s):11.2f}x")
    print(f"{shape:7} (flows out: {flows:,})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--python-slice", type=int, default=200_000)
    args = ap.parse_args()
    n, batch = args.packets, args.batch
    print(f"{n:,} packets per shape, batches of {batch:,}, numpy {np.__version__}, one core, CPU time")
    print(f"{'shape':7} {'what':48} {'seconds':>8} {'packets/s':>12} {'time/builder':>12}")
    for shape in ("scan", "flood", "repeat", "payload"):
        bench_shape(shape, n, batch, args.python_slice)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    arrays = n * PACKET_DTYPE.itemsize / 2**20
    print(f"peak RSS {rss:,.0f} MB (one shape's packet array is {arrays:,.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
