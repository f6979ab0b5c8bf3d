"""Aggregator throughput and memory: 10 million distinct sources over an hour.

Usage: ``python bench/bench_aggregate.py [--sources 10000000] [--minutes 60]
[--scanners 200] [--baseline-batches 2]``

Event time is one hour of 60 s intervals on a /16 telescope. Each interval
brings sources/minutes new one-packet-ish sources (two flow tuples each, to
two dark addresses: background radiation), a hundred victims' backscatter,
and ``--scanners`` ZMap scanners probing 2,000 dark addresses a minute each;
probe samples as the sensor keeps them (both packets of each background
source, four per scanner). Batches are made with numpy before the clock starts; only
``Aggregator.process`` (and the interval ends it triggers) is timed, on one
core. Memory is the process's peak resident set size (ru_maxrss) before and
after, and the detectors' own array bytes at the end.

For scale, the same first batches go through a plain-Python baseline (a dict
of per-source objects with a set of destinations each: what one would write
first) and the ratio is printed. No assertions: figures only.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.engine import Aggregator
from aggregator.settings import AggregatorSettings
from darknet_iodef.addresses import DarkPrefixes, addr16_from_v4
from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE, SLOTS, FlowBatch

T0 = 1_704_067_200 * 1_000_000_000
MIN = 60 * 1_000_000_000
DARK_BASE = (198 << 24) | (18 << 16)


def rss_mb() -> float:
    """Peak resident set size so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def make_batch(k: int, per_minute: int, scanners: int, rng: np.random.Generator) -> FlowBatch:
    start = T0 + k * MIN
    n_bg = 2 * per_minute
    n_scan = scanners * 2000
    n_bs = 100 * 40
    n = n_bg + n_scan + n_bs
    f = np.zeros(n, dtype=FLOW_DTYPE)
    # background: source i of this minute sends to two dark addresses
    first_src = 0x2D000000 + k * per_minute  # distinct across the hour
    src = np.repeat(np.arange(first_src, first_src + per_minute, dtype=np.uint32), 2)
    sc = np.repeat(np.arange(scanners, dtype=np.uint32) + 0x5B000000, 2000)
    bs = np.repeat(np.arange(100, dtype=np.uint32) + 0x5C000000, 40)
    f["src_ip"] = addr16_from_v4(np.concatenate([src, sc, bs]))
    f["dst_ip"] = addr16_from_v4(DARK_BASE + rng.integers(0, 65536, n, dtype=np.uint32))
    f["protocol"] = 6
    f["tcp_flags"][: n_bg + n_scan] = 0x02
    f["tcp_flags"][n_bg + n_scan :] = 0x12
    # each background source sticks to one port (as worms and bots mostly do)
    f["dst_port"][:n_bg] = np.repeat(
        rng.choice(np.array([23, 445, 22, 80, 3389], dtype=np.uint16), per_minute), 2
    )
    f["dst_port"][n_bg : n_bg + n_scan] = 80
    f["src_port"] = 40000
    f["src_port"][n_bg + n_scan :] = 443
    f["ttl"] = 50
    f["ip_len"] = 40
    f["tcp_window"] = 65535
    f["tcp_hdr_len"] = 20
    f["ip_version"] = 4
    f["packet_count"] = 1
    ts = start + rng.integers(0, MIN, n)
    f["first_ns"] = ts
    f["last_ns"] = ts
    slot = ((ts - start) * SLOTS // MIN).astype(np.intp)
    f["slot_counts"][np.arange(n), slot] = 1
    # probe samples as the sensor keeps them (its first packets per source and
    # interval, 4 by default): both packets of each background source, 4 per scanner
    bg_idx = np.arange(n_bg)
    sc_idx = n_bg + (np.arange(scanners)[:, None] * 2000 + np.arange(4)[None, :]).reshape(-1)
    pick = np.concatenate([bg_idx, sc_idx])
    s = np.zeros(pick.shape[0], dtype=SAMPLE_DTYPE)
    for name in (
        "ts_ns",
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "tcp_window",
        "ip_len",
        "protocol",
        "ttl",
    ):
        s[name] = f[name if name != "ts_ns" else "first_ns"][pick]
    s["tcp_flags"] = f["tcp_flags"][pick]
    s["ip_version"] = 4
    s["ip_id"] = rng.integers(0, 65536, pick.shape[0])
    s["tcp_seq"] = rng.integers(0, 2**32, pick.shape[0], dtype=np.uint64)
    s["ip_id"][n_bg:] = 54321  # the scanners are ZMap
    s["ttl"][n_bg:] = 250
    return FlowBatch(start, MIN, "bench", f, s)


def baseline(batches: list[FlowBatch]) -> tuple[float, int]:
    """Plain Python: dict source -> [packets, first, last, set(dsts), set(ports)]."""
    state: dict[bytes, list] = {}
    n = 0
    t = time.process_time()
    for b in batches:
        f = b.flows
        for src, dst, port, pk, first, last in zip(
            f["src_ip"].tolist(),
            f["dst_ip"].tolist(),
            f["dst_port"].tolist(),
            f["packet_count"].tolist(),
            f["first_ns"].tolist(),
            f["last_ns"].tolist(),
            strict=True,
        ):
            st = state.get(src)
            if st is None:
                st = state[src] = [0, first, last, set(), set()]
            st[0] += pk
            st[1] = min(st[1], first)
            st[2] = max(st[2], last)
            st[3].add(dst)
            st[4].add(port)
        n += f.shape[0]
    return time.process_time() - t, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=10_000_000)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--scanners", type=int, default=200)
    ap.add_argument("--baseline-batches", type=int, default=1)
    args = ap.parse_args()
    per_minute = args.sources // args.minutes
    rng = np.random.default_rng(2024)
    settings = AggregatorSettings()
    agg = Aggregator(settings, DarkPrefixes.parse("198.18.0.0/16"))
    gc.collect()
    rss0 = rss_mb()
    busy = cpu = 0.0
    records = 0
    events = 0
    for k in range(args.minutes):
        b = make_batch(k, per_minute, args.scanners, rng)
        t, tc = time.perf_counter(), time.process_time()
        events += len(agg.process(b))
        busy += time.perf_counter() - t
        cpu += time.process_time() - tc
        records += b.flows.shape[0]
        del b
        if (k + 1) % 10 == 0:
            print(
                f"  minute {k + 1:3d}: {agg.scan.src.size:>10,} sources tracked, "
                f"{records / cpu:>12,.0f} records/CPU-s so far, RSS {rss_now_mb():,.0f} MB "
                f"(peak {rss_mb():,.0f} MB)",
                flush=True,
            )
    t, tc = time.perf_counter(), time.process_time()
    events += len(agg.flush())
    busy += time.perf_counter() - t
    cpu += time.process_time() - tc
    det_bytes = agg.scan.src.nbytes + agg.scan.ports.nbytes + agg.scan.dst_pairs.nbytes
    det_bytes += agg.scan.port_pairs.nbytes + agg.backscatter.vec.nbytes + agg.backscatter.net_pairs.nbytes
    print(
        f"aggregator: {records:,} flow records, {args.sources:,} background sources + {args.scanners} "
        f"scanners + 100 victims over {args.minutes} min of event time"
    )
    print(
        f"aggregator: {cpu:.1f} s CPU ({busy:.1f} s wall), {records / cpu:,.0f} flow records per CPU second "
        f"({records / busy:,.0f}/s wall; the machine's other load shows in the difference)"
    )
    print(f"aggregator: {events:,} events; {agg.scan.src.size:,} sources tracked at the end")
    print(
        f"aggregator: peak RSS {rss_mb():,.0f} MB (before: {rss0:,.0f} MB); "
        f"detector arrays {det_bytes / 2**20:,.0f} MB"
    )
    if args.baseline_batches:
        del agg
        gc.collect()
        rng = np.random.default_rng(2024)
        bl = [make_batch(k, per_minute, args.scanners, rng) for k in range(args.baseline_batches)]
        secs, n = baseline(bl)
        agg2 = Aggregator(settings, DarkPrefixes.parse("198.18.0.0/16"))
        t = time.process_time()
        for b in bl:
            agg2.process(b)
        ours = time.process_time() - t
        print(
            f"baseline (dict of Python objects), first {args.baseline_batches} batch(es), {n:,} records: "
            f"{n / secs:,.0f} records/CPU-s; columnar: {n / ours:,.0f} records/CPU-s; "
            f"ratio {secs / ours:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
