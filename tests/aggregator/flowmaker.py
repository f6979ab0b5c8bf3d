"""Hand-made flow batches for the aggregator tests (no sensor needed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from darknet_iodef.addresses import parse_addr16
from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE, SLOTS, FlowBatch

__all__ = ["SEC", "T0", "batch", "flows", "samples"]

#: 2024-01-01T00:00:00Z, the start of every test's event time
T0 = 1_704_067_200 * 1_000_000_000
SEC = 1_000_000_000
_ADDR = {"src_ip", "dst_ip", "quoted_dst_ip", "quoted_src_ip"}


def _fill(dtype: np.dtype, rows: Iterable[Mapping[str, Any]], defaults: Mapping[str, Any]) -> np.ndarray:
    rows = list(rows)
    out = np.zeros(len(rows), dtype=dtype)
    for i, row in enumerate(rows):
        merged = {**defaults, **row}
        for name, value in merged.items():
            if name in _ADDR:
                out[name][i] = np.frombuffer(parse_addr16(value), dtype="V16")[0]
            else:
                out[name][i] = value
        if "ip_version" not in merged:
            out["ip_version"][i] = 4 if ":" not in merged.get("src_ip", "0.0.0.0") else 6
    return out


def flows(rows: Iterable[Mapping[str, Any]], start: int = T0, interval: int = 60 * SEC) -> np.ndarray:
    """Flow tuples; ``ts`` (seconds into the interval) sets first/last and the slot."""
    prepared = []
    for row in rows:
        r = dict(row)
        ts = r.pop("ts", 0.0)
        pk = r.setdefault("packet_count", 1)
        t = start + int(ts * SEC)
        r.setdefault("first_ns", t)
        r.setdefault("last_ns", t)
        if "slot_counts" not in r:
            slots = [0] * SLOTS
            slots[min(int(ts * SEC) * SLOTS // interval, SLOTS - 1)] = pk
            r["slot_counts"] = slots
        prepared.append(r)
    return _fill(
        FLOW_DTYPE,
        prepared,
        {
            "protocol": 6,
            "tcp_flags": 0x02,
            "ttl": 50,
            "ip_len": 40,
            "tcp_window": 65535,
            "tcp_hdr_len": 24,
            "src_port": 40000,
            "dst_port": 80,
        },
    )


def samples(rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
    return _fill(
        SAMPLE_DTYPE,
        rows,
        {
            "protocol": 6,
            "tcp_flags": 0x02,
            "ttl": 50,
            "ip_len": 40,
            "tcp_window": 65535,
            "tcp_hdr_len": 24,
            "src_port": 40000,
            "dst_port": 80,
        },
    )


def batch(
    flow_rows: Iterable[Mapping[str, Any]],
    sample_rows: Iterable[Mapping[str, Any]] = (),
    start: int = T0,
    interval: int = 60 * SEC,
    sensor: str = "test",
) -> FlowBatch:
    return FlowBatch(start, interval, sensor, flows(flow_rows, start, interval), samples(sample_rows))
