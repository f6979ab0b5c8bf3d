"""Capture file writers: classic pcap (us / ns) and pcapng, records built in bulk.

Theory of operation: a chunk of frames arrives as groups of equal-length
frames (one ``(k, L)`` block each) plus each frame's position in time order.
Record offsets are a cumulative sum of record lengths; each group's records
are laid out as rows ``[record header | frame | padding | trailer]`` and
scattered to their offsets in one output buffer, so the work is proportional
to the bytes written, not to the longest frame of the chunk.

Formats: classic pcap (libpcap file format, draft-ietf-opsawg-pcap):
magic 0xA1B2C3D4 (microseconds) or 0xA1B23C4D (nanoseconds), in the writing
host's byte order (little- or big-endian here).
pcapng (draft-ietf-opsawg-pcapng): a Section Header Block, one Interface
Description Block per interface (LINKTYPE_ETHERNET, ``if_name``, ``if_tsresol``
= 9 for nanoseconds), then one Enhanced Packet Block per frame; a file may hold
several sections, each in its own byte order, each repeating its IDBs.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["LINKTYPE_ETHERNET", "SNAPLEN", "CaptureWriter"]

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


def _order(byte_order: str) -> str:
    if byte_order not in ("little", "big"):
        raise ValueError(f"byte order must be little or big ({byte_order!r} given)")
    return "<" if byte_order == "little" else ">"


class CaptureWriter:
    """Writes frames to a pcap or pcapng file, chunk by chunk."""

    def __init__(
        self,
        fh: BinaryIO,
        fmt: str,
        ts_resolution: str,
        interfaces: tuple[str, ...] = (),
        snaplen: int = 0,
        byte_order: str = "little",
    ) -> None:
        """``interfaces``: pcapng only, one IDB per name (``if_name``); default one unnamed IDB.
        ``snaplen``: keep at most this many bytes of each frame (0: whole frames), as a
        telescope capturing headers only does; the original length stays in the record.
        ``byte_order``: of the file's headers (``little`` or ``big``), as the writing host's."""
        if fmt not in ("pcap", "pcapng"):
            raise ValueError(f"unknown format {fmt!r}")
        if ts_resolution not in ("us", "ns"):
            raise ValueError(f"unknown timestamp resolution {ts_resolution!r}")
        self._fh = fh
        self._fmt = fmt
        self._ns = ts_resolution == "ns"
        if interfaces and fmt != "pcapng":
            raise ValueError("several capture interfaces need the pcapng format")
        self._ifaces = interfaces
        if snaplen < 0 or snaplen > SNAPLEN:
            raise ValueError(f"snaplen must be 0 (whole frames) or 1..{SNAPLEN} ({snaplen} given)")
        self._snaplen = snaplen
        self._bo = _order(byte_order)
        self.bytes_written = 0
        self._write(self._file_header())

    def _write(self, data: bytes | npt.NDArray[np.uint8]) -> None:
        self._fh.write(data if isinstance(data, bytes) else data.data)  # an array is written without a copy
        self.bytes_written += len(data)

    def _file_header(self) -> bytes:
        if self._fmt == "pcap":
            magic = 0xA1B23C4D if self._ns else 0xA1B2C3D4
            bo = self._bo
            return struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, self._snaplen or SNAPLEN, LINKTYPE_ETHERNET)
        return self._section_header()

    def _section_header(self) -> bytes:
        # SHB: byte-order magic, version 1.0, section length unknown (-1), no options; then the IDBs
        bo = self._bo
        shb = struct.pack(bo + "IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(bo + "I", 28)
        return shb + b"".join(self._idb(name) for name in (self._ifaces or ("",)))

    def new_section(self, byte_order: str) -> None:
        """pcapng: start a new section (SHB and its IDBs again) in ``byte_order``."""
        if self._fmt != "pcapng":
            raise ValueError("sections are a pcapng feature")
        self._bo = _order(byte_order)
        self._write(self._section_header())

    def _idb(self, name: str) -> bytes:
        opts = b""
        if name:  # if_name (code 2), padded to 32 bits
            raw = name.encode()
            opts += struct.pack(self._bo + "HH", 2, len(raw)) + raw + bytes(-len(raw) % 4)
        if self._ns:
            opts += struct.pack(self._bo + "HHB3x", 9, 1, 9)  # if_tsresol = 9: nanoseconds
        if opts:
            opts += struct.pack(self._bo + "HH", 0, 0)  # opt_endofopt
        idb_len = 20 + len(opts)
        return (
            struct.pack(self._bo + "IIHHI", 1, idb_len, LINKTYPE_ETHERNET, 0, self._snaplen or SNAPLEN)
            + opts
            + struct.pack(self._bo + "I", idb_len)
        )

    def write(
        self,
        ts_ns: npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int64],
        groups: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]],
        iface: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Append one record per frame, in ``ts_ns`` order.

        ``groups`` hold the frames: (indices into ``ts_ns``, an ``(k, L)`` block of
        k frames of length L). ``iface``: each frame's interface (pcapng with interfaces).
        """
        n = len(ts_ns)
        if n == 0:
            return
        orig = lengths.astype(np.uint32)
        cap = np.minimum(lengths, self._snaplen) if self._snaplen else lengths
        pcapng = self._fmt == "pcapng"
        data_len = (cap + 3) // 4 * 4 if pcapng else cap
        if not pcapng:
            u4 = self._bo + "u4"
            hdr = np.zeros(n, dtype=[("sec", u4), ("frac", u4), ("incl", u4), ("orig", u4)])
            hdr["sec"] = ts_ns // 1_000_000_000
            frac = ts_ns % 1_000_000_000
            hdr["frac"] = frac if self._ns else frac // 1000
            hdr["incl"] = cap
            hdr["orig"] = orig
            rec_len = 16 + data_len
        else:
            ticks = ts_ns if self._ns else ts_ns // 1000
            u4 = self._bo + "u4"
            hdr = np.zeros(n, dtype=[("type", u4), ("len", u4), ("iface", u4), ("hi", u4), ("lo", u4),
                                     ("cap", u4), ("orig", u4)])  # fmt: skip
            hdr["type"] = 6
            if self._ifaces and iface is not None:
                hdr["iface"] = iface
            rec_len = 32 + data_len
            hdr["len"] = rec_len
            hdr["hi"] = (ticks >> 32).astype(np.uint32)
            hdr["lo"] = (ticks & 0xFFFFFFFF).astype(np.uint32)
            hdr["cap"] = cap
            hdr["orig"] = orig
        raw = hdr.view(np.uint8).reshape(n, hdr.dtype.itemsize)
        self._write(_assemble(raw, cap, data_len, rec_len, groups, trailer=pcapng, order=self._bo))


def _assemble(
    hdr: npt.NDArray[np.uint8],
    cap: npt.NDArray[np.int64],
    data_len: npt.NDArray[np.int64],
    rec_len: npt.NDArray[np.int64],
    groups: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]],
    trailer: bool,
    order: str,
) -> npt.NDArray[np.uint8]:
    """Records back to back: each group's records are laid out as ``(k, width)`` rows
    ``[header | frame | padding | trailer]`` and scattered to their offsets."""
    offs = np.zeros(len(rec_len), dtype=np.int64)
    np.cumsum(rec_len[:-1], out=offs[1:])
    out = np.zeros(int(rec_len.sum()), dtype=np.uint8)
    hlen = hdr.shape[1]
    for idx, block in groups:
        if not len(idx):
            continue
        c, d = int(cap[idx[0]]), int(data_len[idx[0]])  # one frame length per group
        width = int(rec_len[idx[0]])
        rec = np.zeros((len(idx), width), dtype=np.uint8)
        rec[:, :hlen] = hdr[idx]
        rec[:, hlen : hlen + c] = block[:, :c]
        if trailer:  # pcapng repeats the block's total length after its body
            rec[:, hlen + d :] = rec_len[idx].astype(order + "u4").view(np.uint8).reshape(-1, 4)
        out[offs[idx][:, None] + np.arange(width)] = rec
    return out
