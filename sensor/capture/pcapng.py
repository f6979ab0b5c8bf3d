"""pcapng files: sections of either byte order, many interfaces, EPB/SPB/PB packets.

Layout (draft-ietf-opsawg-pcapng): a sequence of blocks, each
``type, total_length, body, total_length``. A Section Header Block (SHB)
starts a section and fixes its byte order (its type reads the same both
ways); Interface Description Blocks (IDB) number the section's interfaces,
each with its own link type, snaplen, if_tsresol and if_tsoffset. Packets
come in Enhanced (EPB), Simple (SPB, no timestamp, interface 0) and the
obsolete Packet Block (PB). Every other block is skipped.

Blocks are walked in lanes like pcap records (:mod:`sensor.capture.walk`);
only SHBs and IDBs, which are rare, are parsed one at a time in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import CaptureError
from sensor.capture.pcap import MAX_CAPLEN
from sensor.capture.source import ChunkReader
from sensor.capture.stats import CaptureStats
from sensor.capture.walk import ChainFormat, Lanes, lane_grid, lane_start, walk_chain
from sensor.decode import decode_frames

__all__ = ["BT_EPB", "BT_IDB", "BT_PB", "BT_SHB", "BT_SPB", "PCAPNG_MAGIC", "iter_pcapng"]

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002
BT_SPB = 0x00000003
BT_EPB = 0x00000006
PCAPNG_MAGIC = BT_SHB
BYTE_ORDER_MAGIC = 0x1A2B3C4D
#: a non-packet block longer than this is taken for garbage
MAX_BLOCK = 64 << 20
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14


@dataclass(frozen=True, slots=True)
class Interface:
    linktype: int
    snaplen: int
    tsresol: int = 6  # exponent
    binary: bool = False  # resolution 2**-tsresol instead of 10**-tsresol
    tsoffset: int = 0  # seconds


@dataclass(slots=True)
class _Section:
    order: str = "<"
    ifaces: list[Interface] = field(default_factory=list)


def _parse_idb(body: bytes, order: str, where: str, source: str) -> Interface:
    bo: Literal["little", "big"] = "little" if order == "<" else "big"
    if len(body) < 8:
        raise CaptureError(source, where, "interface description block too short")
    linktype = int.from_bytes(body[0:2], bo)
    snaplen = int.from_bytes(body[4:8], bo)
    tsresol, binary, tsoffset = 6, False, 0
    i = 8
    while i + 4 <= len(body):
        code = int.from_bytes(body[i:i + 2], bo)
        length = int.from_bytes(body[i + 2:i + 4], bo)
        value = body[i + 4:i + 4 + length]
        if code == 0:
            break
        if code == OPT_IF_TSRESOL and length >= 1:
            binary = bool(value[0] & 0x80)
            tsresol = value[0] & 0x7F
        elif code == OPT_IF_TSOFFSET and length >= 8:
            tsoffset = int.from_bytes(value[:8], bo, signed=True)
        i += 4 + ((length + 3) & ~3)
    if tsresol > (63 if binary else 18):
        base = 2 if binary else 10
        raise CaptureError(source, where,
                           f"interface timestamp resolution {base}^-{tsresol} is not supported")
    if abs(tsoffset) > 4_000_000_000:
        raise CaptureError(source, where, f"interface timestamp offset {tsoffset} s is out of range")
    return Interface(linktype, snaplen, tsresol, binary, tsoffset)


def _ticks_to_ns(ticks: npt.NDArray[np.uint64], ifc: Interface) -> npt.NDArray[np.int64]:
    k = ifc.tsresol
    t = ticks.astype(np.uint64)
    if ifc.binary:
        sec = (t >> np.uint64(k)).astype(np.int64)
        frac = (t & np.uint64((1 << k) - 1)).astype(np.uint64)
        if k > 33:  # keep frac * 1e9 inside 64 bits
            frac >>= np.uint64(k - 33)
            k = 33
        ns = sec * 1_000_000_000 + ((frac * np.uint64(1_000_000_000)) >> np.uint64(k)).astype(np.int64)
    elif k <= 9:
        ns = t.astype(np.int64) * (10 ** (9 - k))
    else:
        ns = (t // np.uint64(10 ** (k - 9))).astype(np.int64)
    return ns + ifc.tsoffset * 1_000_000_000


def _views(buf: npt.NDArray[np.uint8], order: str) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
    u32 = np.ndarray((buf.size - 3,), dtype=np.dtype(order + "u4"), buffer=buf, offset=0, strides=(1,))
    u16 = np.ndarray((buf.size - 1,), dtype=np.dtype(order + "u2"), buffer=buf, offset=0, strides=(1,))
    return u32, u16


def _format(u32: npt.NDArray[np.uint32], max_len: int) -> ChainFormat:
    def plausible(first: Lanes, stride: int, lanes: int, width: int) -> npt.NDArray[np.bool_]:
        def grid(off: int) -> npt.NDArray[np.uint32]:
            return lane_grid(u32, first, stride, lanes, width, off)

        blen = grid(4)
        m = (grid(0) == BT_EPB) & ((blen & 3) == 0) & (blen >= 32) & (blen <= MAX_CAPLEN + 1024)
        li, col = np.nonzero(m)
        if li.size:
            p = lane_start(first, stride, li) + col
            tail = np.minimum(p + blen[li, col].astype(np.int64) - 4, u32.size - 1)
            bad = u32[tail] != blen[li, col]
            m[li[bad], col[bad]] = False
        return m

    return ChainFormat(len32=u32, len_off=4, base=0, need=12, min_len=12, max_len=max_len,
                       align4=True, plausible=plausible)


def iter_pcapng(reader: ChunkReader, batch_size: int, stats: CaptureStats,
                on_chunk: Callable[[], None] | None = None) -> Iterator[npt.NDArray[np.void]]:
    """Decoded batches of a pcapng file whose first chunk is already in ``reader``."""
    source = reader.source
    sec = _Section()
    last_ts = 0
    pos = 0

    def more(keep_from: int) -> bool:
        """Read more data keeping buf[keep_from:]; False at end of file."""
        if reader.eof:
            return False
        reader.fill(keep_from)
        if on_chunk:
            on_chunk()
        return True

    def where(p: int) -> str:
        return f"offset {reader.base + p}"

    while True:
        # -- a Section Header Block at pos (sequential: byte order may change here)
        if pos + 12 > reader.end:
            if more(pos):
                pos = 0
                continue
            if reader.end - pos:
                stats.warn(f"{source}: {where(pos)}: file ends inside a block header "
                           f"({reader.end - pos} of 12 bytes); the packets before it were read")
            return
        raw = reader.buf[pos:pos + 12].tobytes()
        if int.from_bytes(raw[:4], "little") == BT_SHB:
            bom = int.from_bytes(raw[8:12], "little")
            if bom == BYTE_ORDER_MAGIC:
                sec = _Section("<")
            elif bom == int.from_bytes(BYTE_ORDER_MAGIC.to_bytes(4, "little"), "big"):
                sec = _Section(">")
            else:
                raise CaptureError(source, where(pos), "section header block has no valid byte-order magic")
            shb_len = int.from_bytes(raw[4:8], "little" if sec.order == "<" else "big")
            if shb_len < 28 or shb_len % 4 or shb_len > MAX_BLOCK:
                raise CaptureError(source, where(pos), f"section header block length {shb_len} is impossible")
            if pos + shb_len > reader.end:
                reader.grow(shb_len)
                if more(pos):
                    pos = 0
                    continue
                stats.warn(f"{source}: {where(pos)}: file ends inside a block "
                           f"({reader.end - pos} of {shb_len} bytes); the packets before it were read")
                return
            stats.bytes += shb_len
            pos += shb_len
            continue
        elif pos == 0 and reader.base == 0:
            raise CaptureError(source, "offset 0", "not a pcapng file (no section header block)")

        u32, u16 = _views(reader.buf, sec.order)
        fmt = _format(u32, min(reader.capacity, MAX_BLOCK))
        res = walk_chain(fmt, pos, reader.end)
        stats.lanes_redone += res.redone
        b = res.starts
        # the first 28 bytes of every block as one (n, 7) block of uint32: type, length
        # and, for packet blocks, interface, time high/low, captured and original length
        hw = np.ndarray((reader.buf.size - 27,), dtype="V28", buffer=reader.buf, offset=0,
                        strides=(1,))[b].view(sec.order + "u4").reshape(-1, 7)
        btype = hw[:, 0]
        shb = np.flatnonzero(btype == BT_SHB)
        stop, bad = res.stop, res.bad
        if shb.size:
            stop, bad = int(b[shb[0]]), False
            b = b[:shb[0]]
            btype = btype[:shb[0]]
            hw = hw[:shb[0]]
        blen = hw[:, 1].astype(np.int64)
        trailer = u32[b + blen - 4]
        wrong = np.flatnonzero(trailer != blen)
        if wrong.size:
            k = int(b[wrong[0]])
            raise CaptureError(source, where(k), f"block total length {int(blen[wrong[0]])} does not match "
                               f"its trailing copy {int(trailer[wrong[0]])}")
        # -- interfaces declared in this run of blocks (rare: parsed one by one)
        idb = np.flatnonzero(btype == BT_IDB)
        n_before = len(sec.ifaces)
        for k in idb.tolist():
            bp = int(b[k])
            body = reader.buf[bp + 8:bp + int(blen[k]) - 4].tobytes()
            sec.ifaces.append(_parse_idb(body, sec.order, where(bp), source))
        # -- packet blocks, vectorized
        is_pkt = (btype == BT_EPB) | (btype == BT_SPB) | (btype == BT_PB)
        pk = np.flatnonzero(is_pkt)
        if pk.size:
            p = b[pk]
            t = btype[pk]
            bl = blen[pk]
            ph = hw[pk] if pk.size < b.size else hw
            # number of interfaces declared before each packet block
            known = n_before + np.searchsorted(idb, pk) if idb.size else np.full(pk.size, n_before)
            spb = t == BT_SPB
            pb = t == BT_PB
            iface = ph[:, 2].astype(np.int64)
            if pb.any():
                iface[pb] = u16[p[pb] + 8]  # the obsolete Packet Block: a 16-bit interface ID
            if spb.any():
                iface[spb] = 0
            cap = ph[:, 5].astype(np.int64)
            wire = ph[:, 6].astype(np.int64)
            data = p + 28
            room = bl - 32
            if spb.any():
                wire[spb] = ph[spb, 2]
                data[spb] = p[spb] + 12
                room[spb] = bl[spb] - 16
                snap = sec.ifaces[0].snaplen if sec.ifaces else 0
                cap[spb] = np.minimum(wire[spb], room[spb])
                if snap:
                    cap[spb] = np.minimum(cap[spb], snap)
            bad_if = np.flatnonzero(iface >= known)
            if bad_if.size:
                k = bad_if[0]
                raise CaptureError(source, where(int(p[k])),
                                   f"packet block names interface {int(iface[k])}, "
                                   f"but the section declares {int(known[k])}")
            bad_cap = np.flatnonzero((cap > room) | (cap > MAX_CAPLEN))
            if bad_cap.size:
                k = bad_cap[0]
                raise CaptureError(source, where(int(p[k])),
                                   f"packet block captured length {int(cap[k])} does not fit its block "
                                   f"of {int(bl[k])} bytes")
            ts = np.zeros(p.size, dtype=np.int64)
            timed = ~spb
            ticks = (ph[:, 3].astype(np.uint64) << np.uint64(32)) | ph[:, 4].astype(np.uint64)
            linktype = np.zeros(p.size, dtype=np.int64)
            lo, hi = int(iface.min()), int(iface.max())
            for i in (range(lo, hi + 1) if hi - lo < 64 else np.unique(iface).tolist()):
                ifc = sec.ifaces[i]
                sel = iface == i if lo != hi else np.ones(p.size, dtype=bool)
                if not sel.any():
                    continue
                linktype[sel] = ifc.linktype
                tsel = sel & timed
                if tsel.all():
                    ts = _ticks_to_ns(ticks, ifc)
                elif tsel.any():
                    ts[tsel] = _ticks_to_ns(ticks[tsel], ifc)
            if spb.any():
                # SPBs carry no time: give them the last timestamp seen, so event-time
                # windows stay ordered (tshark shows no time for them)
                idx = np.where(timed, np.arange(p.size), -1)
                np.maximum.accumulate(idx, out=idx)
                prev = np.where(idx >= 0, ts[np.maximum(idx, 0)], last_ts)
                ts = np.where(spb, prev, ts)
            last_ts = int(ts[-1])
            stats.records += int(p.size)
            # one interface: one link type and interface number for all (cheaper to write)
            lt_all: int | npt.NDArray[np.uint16] = (int(linktype[0]) if lo == hi
                                                    else linktype.astype(np.uint16))
            if_all: int | npt.NDArray[np.uint16] = lo if lo == hi else iface.astype(np.uint16)
            for s in range(0, p.size, batch_size):
                sl = slice(s, s + batch_size)
                status = np.zeros(min(batch_size, p.size - s), dtype=np.uint8)
                out = decode_frames(reader.buf, data[sl], cap[sl].astype(np.uint32),
                                    wire[sl].astype(np.uint32), ts[sl],
                                    lt_all if isinstance(lt_all, int) else lt_all[sl],
                                    if_all if isinstance(if_all, int) else if_all[sl], status_out=status)
                stats.count_batch(status, out["linktype"], source)
                yield out
        stats.bytes += int(stop - pos)
        pos = stop
        if shb.size:
            continue
        if bad:
            n = int(u32[stop + 4])
            if n % 4 == 0 and reader.capacity < n <= MAX_BLOCK:
                reader.grow(n)  # one huge non-packet block: make room and go on
                if more(stop):
                    pos = 0
                    continue
            if int.from_bytes(reader.buf[stop:stop + 4].tobytes(), "little") != BT_SHB:
                raise CaptureError(source, where(stop), f"block total length {n} is impossible")
            continue
        if pos + 12 <= reader.end and int.from_bytes(reader.buf[pos:pos + 4].tobytes(), "little") == BT_SHB:
            continue
        if more(pos):
            pos = 0
            continue
        left = reader.end - pos
        if left:
            if left < 12:
                why = f"file ends inside a block header ({left} of 12 bytes)"
            else:
                why = f"file ends inside a block ({left} of {int(u32[pos + 4])} bytes)"
            stats.warn(f"{source}: {where(pos)}: {why}; the packets before it were read")
        return
