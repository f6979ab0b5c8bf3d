"""Fuzzing: random and mutated bytes never make the readers or the decoder raise anything
but CaptureError (and the decoder nothing at all)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darknet_iodef.errors import CaptureError
from sensor.capture import CaptureStats, iter_packet_batches
from sensor.decode import decode_frames
from sensor.fields import PACKET_DTYPE, Status
from tests.sensor.conftest import epb, eth, idb, ip4, pcap_bytes, shb, spb, tcp, udp

_FRAMES = [
    eth(ip4("192.0.2.1", "198.51.100.1", 6, tcp(1, 2, options=b"\x02\x04\x05\xb4\x01\x01\x04\x02"))),
    eth(ip4("192.0.2.1", "198.51.100.1", 17, udp(1, 2, b"abc")), vlans=[(0x8100, 3)]),
    eth(ip4("203.0.113.1", "192.0.2.1", 1, bytes([3, 3, 0, 0, 0, 0, 0, 0])
            + ip4("192.0.2.1", "198.51.100.1", 17, udp(1, 2))[:28])),
]
SEEDS = [
    pcap_bytes([(10**18 + i, f) for i, f in enumerate(_FRAMES * 3)]),
    pcap_bytes([(10**18 + i, f) for i, f in enumerate(_FRAMES * 3)], nanosecond=True, big_endian=True),
    shb() + idb(1) + idb(101, tsresol=9) + b"".join(epb(0, i, f) for i, f in enumerate(_FRAMES))
    + epb(1, 5, _FRAMES[0][14:]) + spb(_FRAMES[1]),
    shb(True) + idb(1, True) + epb(0, 7, _FRAMES[2], True) + shb() + idb(1) + epb(0, 8, _FRAMES[0]),
]
LINKTYPES = [0, 1, 12, 101, 108, 113, 228, 229, 276, 147]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:  # overwrite a byte
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == 1:  # cut the file
            del data[at:]
        elif op == 2:  # insert bytes
            data[at:at] = draw(st.binary(max_size=24))
        else:  # overwrite a 32-bit word (a length field, say) with an extreme value
            if at + 4 <= len(data):
                data[at:at + 4] = draw(st.sampled_from([b"\0\0\0\0", b"\xff\xff\xff\xff", b"\0\0\x10\0",
                                                        b"\x0a\x0d\x0d\x0a", b"\x06\0\0\0"]))
    return bytes(data)


def _read(data: bytes) -> int:
    fd, name = tempfile.mkstemp(suffix=".cap")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        stats = CaptureStats()
        n = 0
        try:
            for b in iter_packet_batches(name, stats=stats, batch_size=4):
                assert b.dtype == PACKET_DTYPE
                n += b.size
        except CaptureError as exc:
            line = exc.line()
            assert line.startswith(name) and "\n" not in line
        return n
    finally:
        os.unlink(name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_captures_raise_only_capture_error(data: bytes) -> None:
    _read(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_capture_error(data: bytes) -> None:
    _read(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=600), st.data())
def test_decoder_never_raises_on_any_frame_bytes(buf: bytes, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 12))
    offs = np.array(data.draw(st.lists(st.integers(-5, len(buf) + 5), min_size=n, max_size=n)), np.int64)
    caps = np.array(data.draw(st.lists(st.integers(0, 700), min_size=n, max_size=n)), np.int64)
    lt = np.array(data.draw(st.lists(st.sampled_from(LINKTYPES), min_size=n, max_size=n)), np.uint16)
    out = decode_frames(np.frombuffer(buf, np.uint8), offs, caps, caps, np.zeros(n, np.int64), lt)
    assert out.size == n
    assert set(out["status"].tolist()) <= {int(s) for s in Status}
