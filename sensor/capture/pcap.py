"""Classic pcap (libpcap) files: microsecond and nanosecond, either byte order.

Layout (draft-ietf-opsawg-pcap): a 24-byte file header (magic, version,
thiszone, sigfigs, snaplen, link type) then records of a 16-byte header
(ts_sec, ts_frac, incl_len, orig_len) and incl_len bytes of frame. The
"modified" pcap of old Linux patches (magic 0xa1b2cd34) adds 8 bytes to each
record header; it is read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import CaptureError
from sensor.capture.source import ChunkReader
from sensor.capture.stats import CaptureStats
from sensor.capture.walk import ChainFormat, Lanes, lane_grid, lane_start, walk_chain
from sensor.decode import decode_frames

__all__ = ["MAX_CAPLEN", "PCAP_MAGICS", "PcapHeader", "iter_pcap", "parse_pcap_header"]

#: the largest record libpcap itself accepts (MAXIMUM_SNAPLEN); anything above is garbage
MAX_CAPLEN = 262144

#: magic as read little-endian -> (byte order, ns resolution, record header length)
PCAP_MAGICS: dict[int, tuple[str, bool, int]] = {
    0xA1B2C3D4: ("<", False, 16),
    0xD4C3B2A1: (">", False, 16),
    0xA1B23C4D: ("<", True, 16),
    0x4D3CB2A1: (">", True, 16),
    0xA1B2CD34: ("<", False, 24),
    0x34CDB2A1: (">", False, 24),
}


@dataclass(frozen=True, slots=True)
class PcapHeader:
    order: str
    nanosecond: bool
    record_header: int
    snaplen: int
    linktype: int


def parse_pcap_header(head: bytes, source: str) -> PcapHeader:
    magic = int.from_bytes(head[:4], "little")
    order, ns, rec = PCAP_MAGICS[magic]
    if len(head) < 24:
        raise CaptureError(source, "offset 0",
                           f"file ends inside the pcap file header ({len(head)} of 24 bytes)")
    bo: Literal["little", "big"] = "little" if order == "<" else "big"
    snaplen = int.from_bytes(head[16:20], bo)
    # the upper bits of the link-type word carry the FCS length (pcap draft, section 4)
    linktype = int.from_bytes(head[20:24], bo) & 0xFFFF
    return PcapHeader(order, ns, rec, snaplen, linktype)


def _u32_view(buf: npt.NDArray[np.uint8], order: str) -> npt.NDArray[np.uint32]:
    """uint32 at every byte offset of ``buf`` (unaligned, no copy)."""
    return np.ndarray((buf.size - 3,), dtype=np.dtype(order + "u4"), buffer=buf, offset=0, strides=(1,))


def _format(buf: npt.NDArray[np.uint8], hdr: PcapHeader) -> ChainFormat:
    u32 = _u32_view(buf, hdr.order)
    frac_max = 1_000_000_000 if hdr.nanosecond else 1_000_000
    rec = hdr.record_header
    cap_max = min(hdr.snaplen, MAX_CAPLEN) if hdr.snaplen > 0 else MAX_CAPLEN

    def plausible(first: Lanes, stride: int, lanes: int, width: int) -> npt.NDArray[np.bool_]:
        def grid(off: int) -> npt.NDArray[np.uint32]:
            return lane_grid(u32, first, stride, lanes, width, off)

        cap = grid(8)
        wire = grid(12)
        m = (grid(4) < frac_max) & (cap >= 1) & (cap <= wire) & (cap <= cap_max) & (wire <= MAX_CAPLEN)
        # a real header is followed by another: check the next one too (lanes are few)
        li, col = np.nonzero(m)
        if li.size:
            p = lane_start(first, stride, li) + col
            nxt = p + rec + cap[li, col].astype(np.int64)
            nxt = np.minimum(nxt, u32.size - 16)
            c2 = u32[nxt + 8]
            ok2 = (u32[nxt + 4] < frac_max) & (c2 <= u32[nxt + 12]) & (c2 <= cap_max)
            m[li[~ok2], col[~ok2]] = False
        return m

    return ChainFormat(len32=u32, len_off=8, base=rec, need=rec, min_len=0, max_len=MAX_CAPLEN,
                       align4=False, plausible=plausible)


def iter_pcap(reader: ChunkReader, hdr: PcapHeader, batch_size: int, stats: CaptureStats,
              on_chunk: Callable[[], None] | None = None) -> Iterator[npt.NDArray[np.void]]:
    """Decoded batches of a classic pcap whose first chunk is already in ``reader``."""
    source = reader.source
    rec = hdr.record_header
    frac_mult = 1 if hdr.nanosecond else 1000
    over_snap = 0
    first_over = -1
    pos = 24
    fmt = _format(reader.buf, hdr)
    while True:
        res = walk_chain(fmt, pos, reader.end)
        stats.lanes_redone += res.redone
        r = res.starts
        if r.size:
            # the record headers, gathered as one (n, 4) block of uint32
            rh = np.ndarray((reader.buf.size - 15,), dtype="V16", buffer=reader.buf, offset=0,
                            strides=(1,))[r].view(hdr.order + "u4").reshape(-1, 4)
            # columns as they are when the file's byte order is the machine's (no copies)
            cap = np.asarray(rh[:, 2], dtype=np.uint32)
            wire = np.asarray(rh[:, 3], dtype=np.uint32)
            ts = rh[:, 0] * np.int64(1_000_000_000)
            ts += rh[:, 1] * np.int64(frac_mult) if frac_mult != 1 else rh[:, 1]
            if 0 < hdr.snaplen < MAX_CAPLEN:
                over = cap > hdr.snaplen
                if over.any():
                    if first_over < 0:
                        first_over = reader.base + int(r[np.argmax(over)])
                    over_snap += int(over.sum())
            stats.records += int(r.size)
            stats.bytes += int(res.stop - pos)
            data = r + rec
            for s in range(0, r.size, batch_size):
                sl = slice(s, s + batch_size)
                status = np.zeros(min(batch_size, r.size - s), dtype=np.uint8)
                out = decode_frames(reader.buf, data[sl], cap[sl], wire[sl], ts[sl], hdr.linktype,
                                    status_out=status)
                stats.count_batch(status, out["linktype"], source)
                yield out
        if res.bad:
            n = int(fmt.len32[res.stop + 8])
            raise CaptureError(source, f"offset {reader.base + res.stop}",
                               f"record captured length {n} is impossible (more than {MAX_CAPLEN} bytes)")
        if reader.eof:
            left = reader.end - res.stop
            if left:
                at = reader.base + res.stop
                if left < rec:
                    why = f"file ends inside a record header ({left} of {rec} bytes)"
                else:
                    need = rec + int(fmt.len32[res.stop + 8])
                    why = f"file ends inside a record ({left} of {need} bytes)"
                stats.warn(f"{source}: offset {at}: {why}; the packets before it were read")
            break
        reader.fill(res.stop)
        if on_chunk is not None:
            on_chunk()
        pos = 0
    if over_snap:
        stats.warn(f"{source}: offset {first_over}: {over_snap} record(s) longer than the file's "
                   f"snaplen {hdr.snaplen}; read as they are")
