"""Flow batch encoding: round trips, and hostile bytes only ever raise RecordError."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darknet_iodef.addresses import addr16_from_v4, parse_addr16
from darknet_iodef.errors import RecordError
from darknet_iodef.flowtuple import (
    FLOW_DTYPE,
    SAMPLE_DTYPE,
    FlowBatch,
    decode_batch,
    encode_batch,
    flow_rows_as_dicts,
    read_batches,
    write_batch,
)


def _batch(n: int = 3) -> FlowBatch:
    flows = np.zeros(n, FLOW_DTYPE)
    flows["src_ip"] = addr16_from_v4(np.arange(1, n + 1, dtype=np.uint32) + 0x01020300)
    flows["dst_ip"][0] = np.frombuffer(parse_addr16("2001:db8::7"), dtype="V16")[0]
    flows["packet_count"] = np.arange(n) + 1
    flows["slot_counts"][:, 2] = flows["packet_count"]
    flows["dst_port"] = 445
    samples = np.zeros(2, SAMPLE_DTYPE)
    samples["ip_id"] = [54321, 7]
    return FlowBatch(1_700_000_040_000_000_000, 60_000_000_000, "sensor-a", flows, samples, {"packets": 6})


def test_round_trip_is_exact() -> None:
    b = _batch()
    data = encode_batch(b)
    back = decode_batch(data)
    assert back.interval_start_ns == b.interval_start_ns and back.interval_ns == b.interval_ns
    assert back.sensor == "sensor-a" and dict(back.stats) == {"packets": 6}
    assert back.flows.tobytes() == b.flows.tobytes()
    assert back.samples.tobytes() == b.samples.tobytes()
    assert encode_batch(back) == data


def test_json_rows_show_addresses_as_text() -> None:
    rows = list(flow_rows_as_dicts(_batch(2)))
    assert rows[0]["src_ip"] == "1.2.3.1"
    assert rows[0]["dst_ip"] == "2001:db8::7"
    assert rows[1]["dst_ip"] is None
    assert rows[1]["slot_counts"] == [0, 0, 2, 0, 0, 0]
    assert "_pad" not in rows[0]


def test_flow_file_round_trip_and_truncation_offset() -> None:
    buf = io.BytesIO()
    write_batch(buf, _batch(1))
    write_batch(buf, _batch(4))
    data = buf.getvalue()
    assert [b.flows.shape[0] for b in read_batches(io.BytesIO(data), "f.flows")] == [1, 4]
    first_len = len(encode_batch(_batch(1))) + 4
    with pytest.raises(RecordError) as exc:
        list(read_batches(io.BytesIO(data[:-10]), "f.flows"))
    assert exc.value.line() == f"f.flows: offset {first_len}: truncated flow batch"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d[:10], "flow batch shorter than its 38-byte header"),
        (lambda d: b"XXXX" + d[4:], "not a flow batch (magic b'XXXX')"),
        (lambda d: d[:4] + b"\x09\x00" + d[6:], "unsupported flow format version 9"),
        (lambda d: d + b"\x00", "does not match header"),
    ],
)
def test_corrupt_batches_raise_record_error(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecordError) as exc:
        decode_batch(mutate(encode_batch(_batch())), "topic[3]@17")
    assert exc.value.source == "topic[3]@17"
    assert reason in exc.value.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 400))
def test_fuzz_only_record_error_escapes(junk: bytes, cut: int) -> None:
    good = encode_batch(_batch())
    for data in (junk, good[:cut] + junk, b"DIFT\x01\x00&\x00" + junk):
        with contextlib.suppress(RecordError):
            decode_batch(data)
