"""A rotating pcap archive of the captured frames, kept as evidence.

Theory of operation: each batch of frames (still in place in the ring) is
written as classic pcap records with nanosecond timestamps (magic
``0xa1b23c4d``) and the interface's link type, built with numpy in one
buffer per batch -- no Python object per frame. A file is rotated when it
would grow past ``rotate_bytes`` or when a frame's timestamp is
``rotate_seconds`` or more after the file's first frame: rotation follows
event time (the kernel timestamps), like everything else in the sensor.
Files are named after their first frame's time, UTC, and carry ``.part``
until closed, so a reader never takes a file still being written for a
complete one. With ``keep`` > 0 only that many closed files are kept.

VLAN tags that the NIC or kernel stripped (TP_STATUS_VLAN_VALID) are put
back after the MAC addresses, as libpcap does, so the archive shows the
frames as they were on the wire.

Record layout (libpcap file format, native byte order):

===========  ======  ======================================
field        offset  meaning
===========  ======  ======================================
ts_sec       0       seconds since the epoch
ts_nsec      4       nanoseconds (the file magic says ns)
incl_len     8       bytes saved
orig_len     12      bytes on the wire
===========  ======  ======================================
"""

from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from sensor.live.bpf import MAX_SNAPLEN
from sensor.live.frames import FrameBatch
from sensor.live.kernel import LINKTYPE_ETHERNET

__all__ = ["ArchiveStats", "RotatingPcapWriter", "pcap_records"]

log = logging.getLogger(__name__)

_GLOBAL_HEADER = struct.Struct("=IHHiIII")
_MAGIC_NS = 0xA1B23C4D
_RECORD = np.dtype([("ts_sec", "=u4"), ("ts_nsec", "=u4"), ("incl_len", "=u4"), ("orig_len", "=u4")])
_MAC_PAIR = 12  # the VLAN tag goes after the destination and source MAC addresses
#: frames per 2-D block: small enough that a jumbo frame widens few rows
_CHUNK_FRAMES = 512


def _record_heads(batch: FrameBatch, lo: int, hi: int, extra: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    head = np.empty(hi - lo, _RECORD)
    ts = batch.ts_ns[lo:hi]
    head["ts_sec"] = ts // 1_000_000_000
    head["ts_nsec"] = ts % 1_000_000_000
    head["incl_len"] = batch.cap_lens[lo:hi].astype(np.int64) + extra
    head["orig_len"] = batch.wire_lens[lo:hi].astype(np.int64) + extra
    return head.view(np.uint8).reshape(-1, _RECORD.itemsize)


def pcap_records(batch: FrameBatch, lo: int = 0, hi: int | None = None) -> npt.NDArray[np.uint8]:
    """Frames ``lo:hi`` of ``batch`` as pcap records (ns timestamps), one buffer.

    Built in chunks of :data:`_CHUNK_FRAMES` frames, each as a 2-D block
    ``[record header | frame | room]`` of the chunk's largest record width:
    the frames are copied in as rows of a sliding-window view of the buffer
    (a row copy each, not an index per byte), and a boolean mask "column <
    record length" then picks every record's bytes in order. A jumbo frame
    only widens its own chunk.
    """
    hi = len(batch) if hi is None else hi
    parts = [_chunk_records(batch, c, min(c + _CHUNK_FRAMES, hi)) for c in range(lo, hi, _CHUNK_FRAMES)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def _chunk_records(batch: FrameBatch, lo: int, hi: int) -> npt.NDArray[np.uint8]:
    off = batch.offsets[lo:hi]
    cap = batch.cap_lens[lo:hi].astype(np.int64)
    tagged = (batch.vlan_tpid[lo:hi] != 0) & (cap >= _MAC_PAIR) & (batch.linktype == LINKTYPE_ETHERNET)
    extra = np.where(tagged, 4, 0)
    width = max(int(cap.max()), 1)
    base = int(off.min())
    span = batch.buf[base : int(off.max()) + width]
    if span.shape[0] < int(off.max()) - base + width:  # the last frames end at the buffer's end
        span = np.concatenate([span, np.zeros(int(off.max()) - base + width - span.shape[0], np.uint8)])
    rows = sliding_window_view(span, width)[off - base]
    head = _RECORD.itemsize
    t = np.flatnonzero(tagged)
    block = np.empty((hi - lo, head + width + (4 if t.size else 0)), np.uint8)
    block[:, :head] = _record_heads(batch, lo, hi, extra)
    block[:, head : head + width] = rows
    if t.size:
        # put the stripped tag back after the MAC addresses: shift the rest of those frames by 4
        block[t, head + _MAC_PAIR + 4 :] = rows[t, _MAC_PAIR:]
        block[t, head + _MAC_PAIR : head + _MAC_PAIR + 2] = (
            batch.vlan_tpid[lo:hi][t].astype(">u2").view(np.uint8).reshape(-1, 2))
        block[t, head + _MAC_PAIR + 2 : head + _MAC_PAIR + 4] = (
            batch.vlan_tci[lo:hi][t].astype(">u2").view(np.uint8).reshape(-1, 2))
    keep = np.arange(block.shape[1]) < (head + cap + extra)[:, None]
    return block[keep]


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    files: int
    frames: int
    bytes: int


class RotatingPcapWriter:
    """Append frame batches to pcap files under ``directory``, rotating them."""

    def __init__(
        self,
        directory: Path,
        linktype: int,
        rotate_bytes: int,
        rotate_seconds: float,
        keep: int = 0,
        snaplen: int = 0,
        prefix: str = "darknet",
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.linktype = linktype
        self.rotate_bytes = max(int(rotate_bytes), _GLOBAL_HEADER.size + 1) if rotate_bytes > 0 else 0
        self.rotate_ns = int(rotate_seconds * 1e9) if rotate_seconds > 0 else 0
        self.keep = keep
        self.snaplen = snaplen if snaplen > 0 else MAX_SNAPLEN
        self.prefix = prefix
        self._fd = -1
        self._path: Path | None = None
        self._size = 0
        self._first_ns = 0
        self._files = 0
        self._frames = 0
        self._bytes = 0

    # -- rotation -------------------------------------------------------
    def _open(self, first_ns: int) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(first_ns // 1_000_000_000))
        name = f"{self.prefix}-{stamp}.{first_ns % 1_000_000_000:09d}Z"
        path = self.directory / f"{name}.pcap.part"
        n = 1
        while path.exists() or path.with_suffix("").exists():
            path = self.directory / f"{name}-{n}.pcap.part"
            n += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(self._fd, _GLOBAL_HEADER.pack(_MAGIC_NS, 2, 4, 0, 0, self.snaplen, self.linktype))
        self._path = path
        self._size = _GLOBAL_HEADER.size
        self._first_ns = first_ns
        self._files += 1
        self._bytes += _GLOBAL_HEADER.size

    def _close(self) -> None:
        if self._path is None:
            return
        os.close(self._fd)
        final = self._path.with_suffix("")  # drop ".part"
        os.replace(self._path, final)
        log.info("Archived %s (%d bytes).", final.name, self._size)
        self._path = None
        self._fd = -1
        if self.keep > 0:
            done = sorted(self.directory.glob(f"{self.prefix}-*.pcap"))
            for old in done[: max(0, len(done) - self.keep)]:
                old.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------
    def write(self, batch: FrameBatch) -> None:
        """Append all frames of ``batch``, rotating as often as needed."""
        n = len(batch)
        if n == 0:
            return
        tagged = (batch.vlan_tpid != 0) & (batch.linktype == LINKTYPE_ETHERNET)
        rec = _RECORD.itemsize + batch.cap_lens.astype(np.int64) + np.where(tagged, 4, 0)
        ends = np.cumsum(rec)
        lo = 0
        while lo < n:
            if self._path is None:
                self._open(int(batch.ts_ns[lo]))
            hi = n
            if self.rotate_ns:
                hi = lo + int(np.searchsorted(batch.ts_ns[lo:], self._first_ns + self.rotate_ns, "left"))
            if self.rotate_bytes:
                room = self.rotate_bytes - self._size
                base = ends[lo - 1] if lo else 0
                hi = min(hi, lo + int(np.searchsorted(ends[lo:] - base, room, "right")))
            if hi == lo and self._size == _GLOBAL_HEADER.size:
                hi = lo + 1  # a frame larger than a file still goes in a file of its own
            if hi > lo:
                self._write_records(batch, lo, hi)
                size = int(ends[hi - 1] - (ends[lo - 1] if lo else 0))
                self._size += size
                self._frames += hi - lo
                self._bytes += size
            lo = hi
            if lo < n:
                self._close()

    def _write_records(self, batch: FrameBatch, lo: int, hi: int) -> None:
        for c in range(lo, hi, _CHUNK_FRAMES):
            view = memoryview(_chunk_records(batch, c, min(c + _CHUNK_FRAMES, hi)).data)
            while view:
                view = view[os.write(self._fd, view):]

    def close(self) -> None:
        self._close()

    def stats(self) -> ArchiveStats:
        return ArchiveStats(self._files, self._frames, self._bytes)
