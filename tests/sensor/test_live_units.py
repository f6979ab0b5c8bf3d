"""The live capture's sans-I/O parts: block walk, pcap archive, filter compiler.

The blocks are built here by hand after ``<linux/if_packet.h>`` (the layout
``sensor/live/kernel.py`` documents), so the walk is checked without a socket;
the archive is read back by tshark, an independent reader.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darknet_iodef.errors import CaptureError, ConfigError
from sensor.live.archive import RotatingPcapWriter, pcap_records
from sensor.live.bpf import compile_filter, describe_program
from sensor.live.frames import FrameBatch, _chain_guess, walk_blocks
from sensor.live.kernel import LINKTYPE_ETHERNET, TP_STATUS_USER, TP_STATUS_VLAN_VALID

BLOCK = 4096
HDR = struct.Struct("=IIIIIIHHIIHH")  # tpacket3_hdr up to tp_vlan_tpid, offsets 0..38
DESC = struct.Struct("=IIIIIIQIIII")


def _frame(i: int, size: int) -> bytes:
    return bytes((i * 7 + j) & 0xFF for j in range(size))


def _block(ring: bytearray, start: int, packets: list[tuple[int, int, bytes, int, int]]) -> None:
    """Write a retired block: packets are (sec, nsec, frame, wire_len, vlan_tci or -1)."""
    first = 48  # offset_to_first_pkt, as the kernel puts it after the block descriptor
    off = start + first
    for n, (sec, nsec, frame, wire, tci) in enumerate(packets):
        mac = 82  # tp_mac as the kernel sets it for Ethernet (aligned netoff - 14)
        nxt = 0 if n == len(packets) - 1 else (mac + len(frame) + 7) // 8 * 8
        status = TP_STATUS_USER | (TP_STATUS_VLAN_VALID if tci >= 0 else 0)
        HDR.pack_into(ring, off, nxt, sec, nsec, len(frame), wire, status, mac, mac + 14, 0,
                      max(tci, 0), 0x88A8 if tci == 7 else 0, 0)
        ring[off + mac : off + mac + len(frame)] = frame
        off += nxt
    DESC.pack_into(ring, start, 3, 0, TP_STATUS_USER, len(packets), first, off - start, 1, 0, 0, 0, 0)


def _ring() -> tuple[np.ndarray, list[tuple[int, int, bytes, int, int]]]:
    ring = bytearray(3 * BLOCK)
    a = [(1700000000, 5, _frame(0, 60), 60, -1), (1700000000, 999_999_999, _frame(1, 1000), 1514, 42),
         (1700000001, 0, _frame(2, 61), 61, -1)]
    b = [(1700000002, 123, _frame(3, 64), 64, 7)]
    _block(ring, BLOCK, a)  # blocks 1 and 2 retired; block 0 still the kernel's
    _block(ring, 2 * BLOCK, b)
    return np.frombuffer(bytes(ring), np.uint8), a + b


def test_walk_reads_every_header_field_in_place() -> None:
    ring, pkts = _ring()
    fb = walk_blocks(ring, [BLOCK, 2 * BLOCK], BLOCK, LINKTYPE_ETHERNET)
    assert len(fb) == 4
    assert fb.ts_ns.tolist() == [1700000000_000000005, 1700000000_999999999, 1700000001_000000000,
                                 1700000002_000000123]
    assert fb.cap_lens.tolist() == [60, 1000, 61, 64]
    assert fb.wire_lens.tolist() == [60, 1514, 61, 64]
    assert fb.vlan_tci.tolist() == [0, 42, 0, 7]
    assert fb.vlan_tpid.tolist() == [0, 0x8100, 0, 0x88A8]  # no TPID reported: 802.1Q
    # the headers were found without following the chain (the guess proved itself)
    guess = _chain_guess(ring.view(np.uint32), ring.view(np.uint16), BLOCK + 48, 2 * BLOCK, 3)
    assert guess is not None and guess.tolist() == [BLOCK + 48, BLOCK + 48 + 144, BLOCK + 48 + 144 + 1088]
    for i, (_s, _ns, frame, _w, _t) in enumerate(pkts):
        o = int(fb.offsets[i])
        assert bytes(fb.buf[o : o + int(fb.cap_lens[i])]) == frame


def test_walk_from_the_network_header_shortens_lengths() -> None:
    ring, _ = _ring()
    fb = walk_blocks(ring, [BLOCK], BLOCK, 101, from_network_header=True)
    assert fb.cap_lens.tolist() == [46, 986, 47]
    assert fb.wire_lens.tolist() == [46, 1500, 47]
    assert bytes(fb.buf[fb.offsets[0] : fb.offsets[0] + 4]) == _frame(0, 60)[14:18]


def test_walk_refuses_a_header_outside_its_block() -> None:
    ring, _ = _ring()
    bad = bytearray(ring.tobytes())
    struct.pack_into("=I", bad, BLOCK + 48 + 12, 5000)  # first packet's tp_snaplen past the block
    with pytest.raises(CaptureError, match="past the end of the block"):
        walk_blocks(np.frombuffer(bytes(bad), np.uint8), [BLOCK], BLOCK, LINKTYPE_ETHERNET)
    bad = bytearray(ring.tobytes())
    struct.pack_into("=I", bad, BLOCK + 48, 1 << 20)  # tp_next_offset out of the ring
    with pytest.raises(CaptureError, match="leaves the ring"):
        walk_blocks(np.frombuffer(bytes(bad), np.uint8), [BLOCK], BLOCK, LINKTYPE_ETHERNET)


def _read_pcap(path: Path) -> list[tuple[int, int, int, bytes]]:
    """(ts_ns, incl_len, orig_len, data) per record; an independent minimal reader."""
    raw = path.read_bytes()
    magic, _maj, _min, _z, _s, _snap, linktype = struct.unpack_from("=IHHiIII", raw, 0)
    assert magic == 0xA1B23C4D and linktype == LINKTYPE_ETHERNET
    out, pos = [], 24
    while pos < len(raw):
        sec, nsec, incl, orig = struct.unpack_from("=IIII", raw, pos)
        out.append((sec * 1_000_000_000 + nsec, incl, orig, raw[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return out


def test_pcap_records_put_stripped_vlan_tags_back() -> None:
    ring, pkts = _ring()
    fb = walk_blocks(ring, [BLOCK, 2 * BLOCK], BLOCK, LINKTYPE_ETHERNET)
    recs = pcap_records(fb).tobytes()
    sec, nsec, incl, orig = struct.unpack_from("=IIII", recs, 16 + 60)  # the second record
    assert (sec, nsec, incl, orig) == (1700000000, 999_999_999, 1004, 1518)
    data = recs[16 + 60 + 16 : 16 + 60 + 16 + incl]
    assert data == pkts[1][2][:12] + b"\x81\x00\x00\x2a" + pkts[1][2][12:]


def test_archive_rotates_by_size_and_event_time(tmp_path: Path, tshark: str) -> None:
    ring, pkts = _ring()
    fb = walk_blocks(ring, [BLOCK, 2 * BLOCK], BLOCK, LINKTYPE_ETHERNET)
    # size: 24-byte header + records of 76 and 1020 bytes do not fit in 1000 together
    w = RotatingPcapWriter(tmp_path / "size", LINKTYPE_ETHERNET, 1000, 0)
    w.write(fb)
    w.close()
    files = sorted((tmp_path / "size").iterdir())
    assert [f.name for f in files] == [
        "darknet-20231114T221320.000000005Z.pcap",
        "darknet-20231114T221320.999999999Z.pcap",
        "darknet-20231114T221321.000000000Z.pcap",
    ]
    got = [r for f in files for r in _read_pcap(f)]
    assert [r[0] for r in got] == fb.ts_ns.tolist()
    assert got[0][3] == pkts[0][2] and got[2][3] == pkts[2][2]
    assert got[3][3] == pkts[3][2][:12] + b"\x88\xa8\x00\x07" + pkts[3][2][12:]
    assert w.stats().files == 3 and w.stats().frames == 4
    # event time: a new file once a frame is >= 1 s after the file's first frame
    def halves(w: RotatingPcapWriter) -> None:
        for sl in (slice(0, 2), slice(2, 4)):
            w.write(FrameBatch(fb.buf, fb.offsets[sl], fb.cap_lens[sl], fb.wire_lens[sl], fb.ts_ns[sl],
                               fb.vlan_tci[sl], fb.vlan_tpid[sl], LINKTYPE_ETHERNET))

    w = RotatingPcapWriter(tmp_path / "time", LINKTYPE_ETHERNET, 0, 1.0)
    halves(w)
    # 21.000000000 is still < 20.000000005 + 1 s: three frames in the first file, then a new one
    assert sorted(p.name for p in (tmp_path / "time").iterdir()) == [
        "darknet-20231114T221320.000000005Z.pcap",
        "darknet-20231114T221322.000000123Z.pcap.part",  # open: not yet a complete file
    ]
    w.close()
    names = sorted(p.name for p in (tmp_path / "time").iterdir())
    assert names == ["darknet-20231114T221320.000000005Z.pcap", "darknet-20231114T221322.000000123Z.pcap"]
    assert len(_read_pcap(tmp_path / "time" / names[0])) == 3
    w = RotatingPcapWriter(tmp_path / "keep", LINKTYPE_ETHERNET, 0, 1.0, keep=1)
    halves(w)
    w.close()
    assert [p.name for p in (tmp_path / "keep").iterdir()] == [names[1]]
    # tshark reads the files (and the nanosecond stamps, and the VLAN tag put back)
    out = subprocess.run([tshark, "-r", str(tmp_path / "time" / names[0]), "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "vlan.id", "-e", "frame.len"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["1700000000.000000005\t\t60", "1700000000.999999999\t42\t1518",
                   "1700000001.000000000\t\t61"]


def test_filter_compiles_through_libpcap() -> None:
    prog = describe_program(compile_filter("", LINKTYPE_ETHERNET, 96))
    assert prog == [(0x06, 0, 0, 96)]  # BPF_RET|BPF_K 96: keep 96 bytes of every frame
    prog = describe_program(compile_filter("ip", LINKTYPE_ETHERNET))
    assert prog == [(0x28, 0, 0, 12), (0x15, 0, 1, 0x0800), (0x06, 0, 0, 262144), (0x06, 0, 0, 0)]
    with pytest.raises(ConfigError, match="setting bpf: cannot compile 'tcp port'"):
        compile_filter("tcp port", LINKTYPE_ETHERNET)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * BLOCK - 4), st.integers(0, 0xFFFFFFFF)), max_size=6),
       st.booleans())
def test_walk_of_a_corrupt_block_is_a_capture_error_or_in_bounds(
    edits: list[tuple[int, int]], from_net: bool
) -> None:
    """Whatever the words of a block say, the walk stays inside it or raises CaptureError."""
    ring, _ = _ring()
    raw = bytearray(ring.tobytes())
    for pos, value in edits:
        struct.pack_into("=I", raw, pos & ~3, value)
    buf = np.frombuffer(bytes(raw), np.uint8)
    results = []
    for fast in (True, False):  # the guessed chain and the followed one agree, errors included
        try:
            results.append(walk_blocks(buf, [BLOCK, 2 * BLOCK], BLOCK, LINKTYPE_ETHERNET,
                                       from_network_header=from_net, fast=fast))
        except CaptureError as exc:
            results.append(exc.reason)
    fb, slow = results
    if isinstance(fb, str):
        assert fb == slow
        return
    assert isinstance(slow, FrameBatch)
    for name in ("offsets", "cap_lens", "wire_lens", "ts_ns", "vlan_tci", "vlan_tpid"):
        assert np.array_equal(getattr(fb, name), getattr(slow, name))
    assert ((fb.offsets >= 0) & (fb.offsets + fb.cap_lens <= fb.buf.shape[0])).all()


def test_a_frame_that_looks_like_a_header_does_not_fool_the_walk() -> None:
    """A payload with the header's tp_mac/tp_net words at an 8-byte slot: the guess fails its proof."""
    ring, pkts = _ring()
    raw = bytearray(ring.tobytes())
    second = BLOCK + 48 + 144  # the second header; its 1000-byte frame starts 82 bytes later
    slot = second + 8 * 20  # an 8-byte slot whose bytes 24..27 lie inside that frame
    struct.pack_into("=HH", raw, slot + 24, 82, 96)  # tp_mac, tp_net as the real headers have them
    assert _chain_guess(np.frombuffer(bytes(raw), np.uint32), np.frombuffer(bytes(raw), np.uint16),
                        BLOCK + 48, 2 * BLOCK, 3) is None
    buf = np.frombuffer(bytes(raw), np.uint8)
    fb = walk_blocks(buf, [BLOCK], BLOCK, LINKTYPE_ETHERNET)
    assert fb.offsets.tolist() == walk_blocks(buf, [BLOCK], BLOCK, LINKTYPE_ETHERNET,
                                              fast=False).offsets.tolist()
    assert len(fb) == 3 and bytes(fb.buf[fb.offsets[2] : fb.offsets[2] + 61]) == pkts[2][2]


def _reference_records(fb: FrameBatch) -> bytes:
    """The pcap records of ``fb`` one frame at a time (the obvious way)."""
    out = []
    for i in range(len(fb)):
        o, c = int(fb.offsets[i]), int(fb.cap_lens[i])
        frame = fb.buf[o : o + c].tobytes()
        if fb.vlan_tpid[i] and c >= 12:
            frame = frame[:12] + struct.pack(">HH", fb.vlan_tpid[i], fb.vlan_tci[i]) + frame[12:]
        extra = len(frame) - c
        ts = int(fb.ts_ns[i])
        out.append(struct.pack("=IIII", ts // 10**9, ts % 10**9, len(frame), int(fb.wire_lens[i]) + extra))
        out.append(frame)
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1600), st.integers(0, 40), st.booleans()),
                min_size=1, max_size=1200),
       st.integers(0, 2**32))
def test_pcap_records_equal_one_frame_at_a_time(frames: list[tuple[int, int, bool]], seed: int) -> None:
    """Any sizes (jumbo frames across 512-frame chunks), gaps, stripped tags, frames to the buffer's end."""
    rng = np.random.default_rng(seed)
    offsets, pos = [], 0
    for cap, gap, _ in frames:
        pos += gap
        offsets.append(pos)
        pos += cap
    n = len(frames)
    fb = FrameBatch(rng.integers(0, 256, pos, dtype=np.uint8), np.array(offsets, np.int64),
                    np.array([f[0] for f in frames], np.uint32),
                    np.array([f[0] + 7 for f in frames], np.uint32),
                    rng.integers(0, 2**32 * 10**9, n, dtype=np.int64),
                    rng.integers(0, 2**16, n, dtype=np.uint16),
                    np.array([0x8100 if f[2] else 0 for f in frames], np.uint16), LINKTYPE_ETHERNET)
    assert pcap_records(fb).tobytes() == _reference_records(fb)
