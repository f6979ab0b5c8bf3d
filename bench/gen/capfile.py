"""Capture file writers: classic pcap (us / ns) and pcapng, records built in bulk.

Theory of operation: a chunk of frames arrives as an ``(n, width)`` byte
block plus each frame's length. Each record is laid out as one row
``[record header | frame | padding | trailer]`` of a wider block, and a
boolean mask ``column < record length`` picks the bytes of every record in
row-major order, which is exactly the records written back to back.

Formats: classic pcap (libpcap file format, draft-ietf-opsawg-pcap):
magic 0xA1B2C3D4 (microseconds) or 0xA1B23C4D (nanoseconds), little-endian.
pcapng (draft-ietf-opsawg-pcapng): one Section Header Block, one Interface
Description Block (LINKTYPE_ETHERNET, with ``if_tsresol`` = 9 for
nanoseconds), then one Enhanced Packet Block per frame.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["LINKTYPE_ETHERNET", "SNAPLEN", "CaptureWriter"]

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


def _records(
    frames: npt.NDArray[np.uint8],
    lengths: npt.NDArray[np.int64],
    header: npt.NDArray[np.uint8],
    pad4: bool,
    trailer: bool,
) -> bytes:
    n, width = frames.shape
    hlen = header.shape[1]
    data_len = ((lengths + 3) // 4 * 4) if pad4 else lengths
    rec_len = hlen + data_len + (4 if trailer else 0)
    pad_w = ((width + 3) // 4 * 4) if pad4 else width
    total_w = hlen + pad_w + (4 if trailer else 0)
    block = np.zeros((n, total_w), dtype=np.uint8)
    block[:, :hlen] = header
    block[:, hlen : hlen + width] = frames
    if pad4:  # frames are zero beyond their length already; nothing to clear
        pass
    if trailer:  # pcapng repeats the block's total length after its body
        cols = (hlen + data_len)[:, None] + np.arange(4)
        block[np.arange(n)[:, None], cols] = rec_len.astype("<u4").view(np.uint8).reshape(n, 4)
    mask = np.arange(total_w)[None, :] < rec_len[:, None]
    return block[mask].tobytes()


class CaptureWriter:
    """Writes frames to a pcap or pcapng file, chunk by chunk."""

    def __init__(
        self,
        fh: BinaryIO,
        fmt: str,
        ts_resolution: str,
        interfaces: tuple[str, ...] = (),
        snaplen: int = 0,
    ) -> None:
        """``interfaces``: pcapng only, one IDB per name (``if_name``); default one unnamed IDB.
        ``snaplen``: keep at most this many bytes of each frame (0: whole frames), as a
        telescope capturing headers only does; the original length stays in the record."""
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
        self.bytes_written = 0
        self._write(self._file_header())

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self.bytes_written += len(data)

    def _file_header(self) -> bytes:
        if self._fmt == "pcap":
            magic = 0xA1B23C4D if self._ns else 0xA1B2C3D4
            return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, self._snaplen or SNAPLEN, LINKTYPE_ETHERNET)
        # SHB: byte-order magic, version 1.0, section length unknown (-1), no options
        shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
        return shb + b"".join(self._idb(name) for name in (self._ifaces or ("",)))

    def _idb(self, name: str) -> bytes:
        opts = b""
        if name:  # if_name (code 2), padded to 32 bits
            raw = name.encode()
            opts += struct.pack("<HH", 2, len(raw)) + raw + bytes(-len(raw) % 4)
        if self._ns:
            opts += struct.pack("<HHB3x", 9, 1, 9)  # if_tsresol = 9: nanoseconds
        if opts:
            opts += struct.pack("<HH", 0, 0)  # opt_endofopt
        idb_len = 20 + len(opts)
        return (
            struct.pack("<IIHHI", 1, idb_len, LINKTYPE_ETHERNET, 0, self._snaplen or SNAPLEN)
            + opts
            + struct.pack("<I", idb_len)
        )

    def write(
        self,
        ts_ns: npt.NDArray[np.int64],
        frames: npt.NDArray[np.uint8],
        lengths: npt.NDArray[np.int64],
        iface: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Append one record per frame; ``iface`` is each frame's interface (pcapng with interfaces)."""
        n = len(ts_ns)
        if n == 0:
            return
        orig = lengths.astype(np.uint32)
        if self._snaplen and int(lengths.max()) > self._snaplen:
            lengths = np.minimum(lengths, self._snaplen)
            # bytes past the snap length must not leak into a record's padding
            frames = np.where(np.arange(frames.shape[1])[None, :] < lengths[:, None], frames, np.uint8(0))
        ln = lengths.astype(np.uint32)
        if self._fmt == "pcap":
            hdr = np.zeros(n, dtype=[("sec", "<u4"), ("frac", "<u4"), ("incl", "<u4"), ("orig", "<u4")])
            hdr["sec"] = ts_ns // 1_000_000_000
            frac = ts_ns % 1_000_000_000
            hdr["frac"] = frac if self._ns else frac // 1000
            hdr["incl"] = ln
            hdr["orig"] = orig
            raw = hdr.view(np.uint8).reshape(n, 16)
            self._write(_records(frames, lengths, raw, pad4=False, trailer=False))
            return
        ticks = ts_ns if self._ns else ts_ns // 1000
        epb = np.zeros(
            n,
            dtype=[
                ("type", "<u4"),
                ("len", "<u4"),
                ("iface", "<u4"),
                ("hi", "<u4"),
                ("lo", "<u4"),
                ("cap", "<u4"),
                ("orig", "<u4"),
            ],
        )
        epb["type"] = 6
        if self._ifaces and iface is not None:
            epb["iface"] = iface
        epb["len"] = 32 + (lengths + 3) // 4 * 4
        epb["hi"] = (ticks >> 32).astype(np.uint32)
        epb["lo"] = (ticks & 0xFFFFFFFF).astype(np.uint32)
        epb["cap"] = ln
        epb["orig"] = orig
        raw = epb.view(np.uint8).reshape(n, 28)
        self._write(_records(frames, lengths, raw, pad4=True, trailer=True))
