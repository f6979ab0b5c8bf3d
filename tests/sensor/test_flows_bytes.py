"""The byte-level structured-row copies equal numpy's own (slow) field-by-field copies."""

from __future__ import annotations

import numpy as np

from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE
from sensor.fields import PACKET_DTYPE
from sensor.flows_bytes import concat_rows, copy_fields, put_column, take_rows


def noise(dtype: np.dtype, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype).copy()


def test_take_and_concat_equal_numpy() -> None:
    rows = noise(SAMPLE_DTYPE, 1000, 1)  # 116-byte rows: words are not all aligned
    idx = np.random.default_rng(2).integers(0, 1000, 3000)
    assert take_rows(rows, idx).tobytes() == rows[idx].tobytes()
    parts = [rows[:10], rows[10:700], rows[700:]]
    assert concat_rows(parts).tobytes() == np.concatenate(parts).tobytes()


def test_copy_fields_and_put_column_equal_field_assignment() -> None:
    names = ("ts_ns", "tcp_opt_kinds", "ip_id", "tcp_seq", "tcp_ack", "src_port", "dst_port",
             "tcp_window", "tcp_mss", "tcp_flags", "protocol", "ttl", "ip_version", "tcp_hdr_len",
             "icmp_type", "icmp_code")
    pk = noise(PACKET_DTYPE, 777, 3)
    fast = noise(SAMPLE_DTYPE, 777, 4)
    slow = fast.copy()
    copy_fields(fast, pk, names)
    for name in names:
        slow[name] = pk[name]
    assert fast.tobytes() == slow.tobytes()

    flows = noise(FLOW_DTYPE, 555, 5)
    expect = flows.copy()
    slots = np.random.default_rng(6).integers(0, 2**32, (555, 6))
    first = np.random.default_rng(7).integers(-(2**62), 2**62, 555)
    put_column(flows, "slot_counts", slots)
    put_column(flows, "first_ns", first)
    expect["slot_counts"] = slots
    expect["first_ns"] = first
    assert flows.tobytes() == expect.tobytes()
