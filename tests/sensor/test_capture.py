"""Capture readers: formats, streaming in chunks, the lane walk, and every documented error."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from darknet_iodef.errors import CaptureError
from sensor.capture import CaptureStats, iter_packet_batches
from sensor.fields import PACKET_DTYPE, Status
from tests.sensor.conftest import epb as epb_block
from tests.sensor.conftest import eth, idb, ip4, other_block, pcap_bytes, shb, spb, tcp, udp

Write = Callable[[str, bytes], Path]
T0 = 1_700_000_000_123_456_000


def read_all(path: Path, stats: CaptureStats | None = None, **kw: int) -> np.ndarray:
    batches = list(iter_packet_batches(path, stats=stats, **kw))
    return np.concatenate(batches) if batches else np.zeros(0, PACKET_DTYPE)


def syn(i: int, payload: bytes = b"") -> bytes:
    return eth(ip4("192.0.2.1", f"198.51.100.{i % 250}", 6, tcp(40000 + i % 1000, 80, seq=i) + payload))


# ----------------------------------------------------------------------------- shared captures

@pytest.mark.shared
def test_wits2004_pcap_us_ns_and_pcapng_give_identical_arrays(shared_pcaps: Path) -> None:
    us = read_all(shared_pcaps / "wits2004_100pkts.pcap")
    ns = read_all(shared_pcaps / "wits2004_100pkts_nsec.pcap")
    ng = read_all(shared_pcaps / "wits2004_100pkts.pcapng")
    assert us.size == 100
    assert us.tobytes() == ns.tobytes() == ng.tobytes()
    assert int(us["ts_ns"][0]) == 1095292801_000721000


@pytest.mark.shared
def test_empty_capture_gives_no_packets_and_no_warning(shared_pcaps: Path) -> None:
    stats = CaptureStats()
    assert read_all(shared_pcaps / "fmt_empty_header_only.pcap", stats).size == 0
    assert stats.warnings == [] and stats.files == 1 and stats.records == 0


@pytest.mark.shared
def test_capture_cut_short_warns_and_keeps_the_packets_before(shared_pcaps: Path) -> None:
    path = shared_pcaps / "fmt_cut_short_DERIVED_zmap_first100000B.pcap"
    stats = CaptureStats()
    got = read_all(path, stats)
    assert got.size == 1315  # what tshark and capinfos count
    assert stats.warnings == [f"{path}: offset 99928: file ends inside a record (72 of 76 bytes); "
                              "the packets before it were read"]


@pytest.mark.shared
def test_record_longer_than_snaplen_is_read_with_a_warning(shared_pcaps: Path) -> None:
    path = shared_pcaps / "fmt_incl_len_gt_snaplen.pcap"
    stats = CaptureStats()
    got = read_all(path, stats)
    assert got.size == 1
    assert (int(got["cap_len"][0]), int(got["wire_len"][0])) == (8, 78)
    assert got["status"][0] == Status.TRUNCATED_LINK  # 8 bytes: not even an Ethernet header
    assert stats.warnings == [f"{path}: offset 24: 1 record(s) longer than the file's snaplen 1; "
                              "read as they are"]
    assert stats.by_status == {Status.TRUNCATED_LINK: 1}


@pytest.mark.shared
def test_pcapng_sections_of_both_byte_orders(shared_pcaps: Path) -> None:
    got = read_all(shared_pcaps / "fmt_pcapng_be_multisection_mixed_endian.pcapng")
    assert got.size == 8
    assert got["linktype"].tolist() == [1, 1, 0, 1, 1, 1, 1, 0]
    assert (got["status"] == Status.OK).all()


@pytest.mark.shared
def test_pcapng_interfaces_with_different_tsresol(shared_pcaps: Path) -> None:
    got = read_all(shared_pcaps / "fmt_pcapng_multi_interface_tsresol.pcapng")
    assert got["iface"].tolist() == [0, 0, 1, 1, 1, 1]
    # interface 0 counts nanoseconds, interface 1 microseconds (values as tshark prints them)
    assert got["ts_ns"].tolist()[1:3] == [1767663089_514291940, 1767663437_111897000]


# ----------------------------------------------------------------------------- formats

@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_classic_pcap_every_variant(write: Write, big_endian: bool, nanosecond: bool) -> None:
    frames = [(T0 + i * 1_000, syn(i)) for i in range(50)]
    path = write("x.pcap", pcap_bytes(frames, nanosecond=nanosecond, big_endian=big_endian))
    got = read_all(path)
    assert got.size == 50
    assert got["ts_ns"].tolist() == [T0 + i * 1_000 for i in range(50)]
    assert got["tcp_seq"].tolist() == list(range(50))
    assert (got["status"] == Status.OK).all()


@pytest.mark.parametrize("opener", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_captures_are_read_transparently(write: Write, opener: Callable[[bytes], bytes]) -> None:
    raw = pcap_bytes([(T0 + i, syn(i)) for i in range(300)])
    plain = read_all(write("a.pcap", raw))
    packed = read_all(write("a.pcap.anything", opener(raw)))
    assert packed.tobytes() == plain.tobytes()


def test_pcapng_epb_spb_other_blocks_tsresol_and_tsoffset(write: Write) -> None:
    f1 = syn(1)
    f2 = eth(ip4("192.0.2.9", "198.51.100.7", 17, udp(5000, 53)))
    data = b"".join([
        shb(),
        idb(1),  # microseconds (default)
        other_block(0x0BAD, b"custom block"),
        idb(101, tsresol=9, tsoffset=100),  # raw IP, nanoseconds, +100 s
        idb(1, tsresol=0x80 | 20),  # 2^-20 s ticks
        epb_block(0, 1_700_000_000_000_001, f1),
        epb_block(1, 1_700_000_000_000_000_007, f2[14:]),
        spb(f2),
        other_block(5, b"\0" * 8),  # interface statistics
        epb_block(2, (1_700_000_000 << 20) | (1 << 19), f1),
    ])
    got = read_all(write("x.pcapng", data))
    assert got.size == 4
    assert got["iface"].tolist() == [0, 1, 0, 2]
    assert got["linktype"].tolist() == [1, 101, 1, 1]
    assert got["ts_ns"].tolist() == [
        1_700_000_000_000_001_000,
        1_700_000_100_000_000_007,
        1_700_000_100_000_000_007,  # an SPB has no time: the previous packet's
        1_700_000_000_500_000_000,
    ]
    assert got["protocol"].tolist() == [6, 17, 17, 6]
    assert got["dst_port"].tolist() == [80, 53, 53, 80]


def test_pcapng_sections_switch_byte_order_and_reset_interfaces(write: Write) -> None:
    data = b"".join([
        shb(big_endian=True), idb(1, big_endian=True), epb_block(0, 1, syn(1), big_endian=True),
        shb(), idb(101), epb_block(0, 2, syn(2)[14:]),
        shb(big_endian=True), idb(1, big_endian=True), epb_block(0, 3, syn(3), big_endian=True),
    ])
    got = read_all(write("x.pcapng", data))
    assert got["linktype"].tolist() == [1, 101, 1]
    assert got["ts_ns"].tolist() == [1000, 2000, 3000]
    assert got["tcp_seq"].tolist() == [1, 2, 3]


# ----------------------------------------------------------------------------- streaming and lanes

@pytest.mark.parametrize("chunk", [1 << 20, 3 << 20])
def test_results_do_not_depend_on_chunk_or_batch_size(write: Write, chunk: int) -> None:
    rng = np.random.default_rng(7)
    frames = [(T0 + i, syn(i, bytes(rng.integers(0, 256, int(rng.integers(0, 1200)), dtype=np.uint8))))
              for i in range(6000)]
    path = write("x.pcap", pcap_bytes(frames))
    whole = read_all(path)
    assert whole.size == 6000 and whole["tcp_seq"].tolist() == list(range(6000))
    stats = CaptureStats()
    small = read_all(path, stats, chunk_bytes=chunk, batch_size=777)
    assert small.tobytes() == whole.tobytes()
    assert stats.records == 6000


def test_record_headers_planted_in_payloads_do_not_fool_the_walk(write: Write) -> None:
    """Payloads full of plausible record headers: lanes that seed on them are redone."""
    fake = b""
    for k in range(40):
        fake += struct.pack("<IIII", 1_700_000_000, 5, 24 + k % 7, 24 + k % 7) + b"\0" * (24 + k % 7)
    frames = [(T0 + i * 1000, syn(i, fake[(i * 13) % 200:][:700])) for i in range(20000)]
    path = write("x.pcap", pcap_bytes(frames))
    stats = CaptureStats()
    got = read_all(path, stats)
    assert got.size == 20000
    assert got["tcp_seq"].tolist() == list(range(20000))
    assert got["ts_ns"].tolist() == [T0 + i * 1000 for i in range(20000)]
    assert stats.lanes_redone > 0  # the test did plant headers the walk seeded on


def test_pcapng_walk_is_exact_across_chunks(write: Write) -> None:
    blocks = [shb(), idb(1)]
    for i in range(20000):
        blocks.append(epb_block(0, 10**15 + i, syn(i, b"\0" * (i % 97))))
        if i % 5000 == 0:
            blocks.append(other_block(0x0BAD, b"x" * 3000))
    path = write("x.pcapng", b"".join(blocks))
    got = read_all(path, chunk_bytes=1 << 20)
    assert got["tcp_seq"].tolist() == list(range(20000))


# ----------------------------------------------------------------------------- bad input

def _err(path: Path) -> str:
    with pytest.raises(CaptureError) as exc:
        read_all(path)
    return exc.value.line()


def test_empty_file(write: Write) -> None:
    p = write("e.pcap", b"")
    assert _err(p) == f"{p}: offset 0: empty file (no capture header)"


def test_wrong_magic(write: Write) -> None:
    p = write("m.pcap", b"GIF89a" + bytes(40))
    assert _err(p) == f"{p}: offset 0: not a pcap or pcapng file (magic number 47494638)"


def test_missing_file() -> None:
    with pytest.raises(CaptureError) as exc:
        read_all(Path("/nonexistent.pcap"))
    assert exc.value.line() == "/nonexistent.pcap: cannot open: No such file or directory"


def test_truncated_file_header(write: Write) -> None:
    p = write("h.pcap", pcap_bytes([])[:20])
    assert _err(p) == f"{p}: offset 0: file ends inside the pcap file header (20 of 24 bytes)"


def test_truncated_record_header_is_a_warning(write: Write) -> None:
    raw = pcap_bytes([(T0, syn(1)), (T0, syn(2))])
    p = write("t.pcap", raw[:-len(syn(2)) - 6])
    stats = CaptureStats()
    assert read_all(p, stats).size == 1
    at = 24 + 16 + len(syn(1))
    assert stats.warnings == [f"{p}: offset {at}: file ends inside a record header (10 of 16 bytes); "
                              "the packets before it were read"]


def test_absurd_caplen_is_an_error_with_its_offset(write: Write) -> None:
    raw = pcap_bytes([(T0, syn(1))]) + struct.pack("<IIII", 1, 0, 300_000, 300_000) + bytes(64)
    p = write("c.pcap", raw)
    got: list[np.ndarray] = []
    with pytest.raises(CaptureError) as exc:
        got.extend(iter_packet_batches(p))
    assert exc.value.line() == (f"{p}: offset {24 + 16 + len(syn(1))}: record captured length 300000 is "
                                "impossible (more than 262144 bytes)")
    assert sum(b.size for b in got) == 1  # the packet before it was delivered first


def test_garbage_pcapng_block_length(write: Write) -> None:
    data = shb() + idb(1) + epb_block(0, 1, syn(1)) + struct.pack("<II", 6, 13) + bytes(40)
    p = write("g.pcapng", data)
    at = len(shb() + idb(1) + epb_block(0, 1, syn(1)))
    assert _err(p) == f"{p}: offset {at}: block total length 13 is impossible"


def test_pcapng_trailing_length_mismatch(write: Write) -> None:
    good = epb_block(0, 1, syn(1))
    bad = good[:-4] + struct.pack("<I", len(good) + 4)
    p = write("g.pcapng", shb() + idb(1) + bad)
    assert _err(p) == (f"{p}: offset {len(shb() + idb(1))}: block total length {len(good)} does not match "
                       f"its trailing copy {len(good) + 4}")


def test_pcapng_packet_on_an_undeclared_interface(write: Write) -> None:
    p = write("i.pcapng", shb() + idb(1) + epb_block(3, 1, syn(1)))
    assert _err(p) == f"{p}: offset {len(shb() + idb(1))}: packet block names interface 3, but the " \
                      "section declares 1"


def test_pcapng_truncated_block_is_a_warning(write: Write) -> None:
    data = shb() + idb(1) + epb_block(0, 1, syn(1)) + epb_block(0, 2, syn(2))
    p = write("t.pcapng", data[:-9])
    stats = CaptureStats()
    assert read_all(p, stats).size == 1
    at = len(shb() + idb(1) + epb_block(0, 1, syn(1)))
    n = len(epb_block(0, 2, syn(2)))
    assert stats.warnings == [f"{p}: offset {at}: file ends inside a block ({n - 9} of {n} bytes); "
                              "the packets before it were read"]


def test_unknown_link_type_is_counted_and_reported_once(write: Write) -> None:
    p = write("u.pcap", pcap_bytes([(T0, b"\x01\x02\x03")] * 5, linktype=147))
    stats = CaptureStats()
    got = read_all(p, stats)
    assert (got["status"] == Status.UNKNOWN_LINKTYPE).all()
    assert stats.unknown_linktypes == {147: 5}
    assert stats.warnings == [f"{p}: link type 147 is not supported; its packets are counted and skipped"]


@pytest.fixture
def write(write_file: Write) -> Write:
    return write_file


def test_fcs_bits_of_the_link_type_word_are_ignored(write: Write) -> None:
    # pcap draft section 4: bit 28 says the FCS length in bits 26-27 is valid
    p = write("f.pcap", pcap_bytes([(T0, syn(1))], linktype=0x14000001))
    got = read_all(p)
    assert (int(got["linktype"][0]), int(got["dst_port"][0])) == (1, 80)


def test_peak_memory_does_not_grow_with_file_size(write: Write) -> None:
    """Chunked reading: a 4x bigger file has the same peak of traced allocations."""
    frame = syn(1)
    rec = struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame
    peaks = []
    for count in (50_000, 200_000):
        path = write(f"m{count}.pcap", pcap_bytes([])[:24] + rec * count)
        tracemalloc.start()
        try:
            n = sum(b.size for b in iter_packet_batches(path, batch_size=4096, chunk_bytes=1 << 20))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert n == count
    assert peaks[1] < 8 << 20  # the 1 MiB chunk, one batch and the decoder's temporaries
    assert peaks[1] < peaks[0] * 1.25
