"""Flow batches from the builder through the binary encoding and flow files, and back."""

from __future__ import annotations

import io

import numpy as np
import pytest

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.errors import RecordError
from darknet_iodef.flowtuple import FlowBatch, decode_batch, encode_batch, read_batches, write_batch
from sensor.flows import FlowBuilder
from sensor.settings import SensorSettings
from tests.sensor.flow_packets import synthetic


def batches() -> list[FlowBatch]:
    b = FlowBuilder(DarkPrefixes.parse("198.18.0.0/24,2001:db8:dead::/120"), SensorSettings(), "fmt-ü")
    return b.push(synthetic(2000, seed=9)) + b.flush()


def same(a: FlowBatch, b: FlowBatch) -> bool:
    return (
        (a.interval_start_ns, a.interval_ns, a.sensor, dict(a.stats))
        == (b.interval_start_ns, b.interval_ns, b.sensor, dict(b.stats))
        and a.flows.tobytes() == b.flows.tobytes()
        and a.samples.tobytes() == b.samples.tobytes()
    )


def test_encode_decode_round_trip() -> None:
    out = batches()
    assert len(out) == 4  # 200 s of packets from an interval boundary: 4 intervals
    for fb in out:
        assert fb.flows.shape[0] > 0 and fb.samples.shape[0] > 0
        back = decode_batch(encode_batch(fb))
        assert same(fb, back)
        assert encode_batch(back) == encode_batch(fb)


def flow_file(out: list[FlowBatch]) -> bytes:
    buf = io.BytesIO()
    for fb in out:
        write_batch(buf, fb)
    return buf.getvalue()


def test_flow_file_round_trip() -> None:
    out = batches()
    back = list(read_batches(io.BytesIO(flow_file(out)), "f.flows"))
    assert len(back) == len(out)
    assert all(same(a, b) for a, b in zip(out, back, strict=True))


def test_corrupt_flow_file_names_the_offset() -> None:
    out = batches()
    data = bytearray(flow_file(out))
    second = 4 + int.from_bytes(data[:4], "little")
    third = second + 4 + int.from_bytes(data[second : second + 4], "little")

    def read(raw: bytes) -> list[FlowBatch]:
        return list(read_batches(io.BytesIO(raw), "f.flows"))

    bad = bytearray(data)
    bad[second + 4 + 4] = 9  # version of the second batch
    with pytest.raises(RecordError) as err:
        read(bytes(bad))
    assert err.value.line() == f"f.flows: offset {second}: unsupported flow format version 9"

    bad = bytearray(data)
    bad[third : third + 4] = (int.from_bytes(data[third : third + 4], "little") - 1).to_bytes(4, "little")
    with pytest.raises(RecordError) as err:
        read(bytes(bad))
    assert err.value.position == f"offset {third}"
    assert "does not match header" in err.value.reason

    with pytest.raises(RecordError) as err:
        read(bytes(data[: third + 2]))
    assert err.value.line() == f"f.flows: offset {third}: truncated frame length"

    # the batches before the damage were delivered intact
    it = read_batches(io.BytesIO(bytes(data[: third + 2])), "f.flows")
    assert same(next(it), out[0]) and same(next(it), out[1])


def test_decoded_arrays_are_writable_copies() -> None:
    fb = batches()[0]
    back = decode_batch(encode_batch(fb))
    back.flows["packet_count"][0] = 0  # a consumer may annotate in place
    assert np.any(fb.flows["packet_count"] != back.flows["packet_count"])
