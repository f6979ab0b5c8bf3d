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

from sensor.live.bpf import MAX_SNAPLEN
from sensor.live.frames import FrameBatch
from sensor.live.kernel import LINKTYPE_ETHERNET

__all__ = ["ArchiveStats", "RotatingPcapWriter", "pcap_records"]

log = logging.getLogger(__name__)

_GLOBAL_HEADER = struct.Struct("=IHHiIII")
_MAGIC_NS = 0xA1B23C4D
_RECORD = np.dtype([("ts_sec", "=u4"), ("ts_nsec", "=u4"), ("incl_len", "=u4"), ("orig_len", "=u4")])
_MAC_PAIR = 12  # the VLAN tag goes after the destination and source MAC addresses


def _ragged(starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Concatenated ``arange(s, s + n)`` for every (s, n), with one cumsum."""
    keep = lengths > 0
    s, n = starts[keep], lengths[keep]
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    step = np.ones(total, np.int64)
    firsts = np.zeros(s.shape[0], np.int64)
    np.cumsum(n[:-1], out=firsts[1:])
    step[0] = s[0]
    step[firsts[1:]] = s[1:] - (s[:-1] + n[:-1] - 1)
    return np.cumsum(step)


def pcap_records(batch: FrameBatch, lo: int = 0, hi: int | None = None) -> npt.NDArray[np.uint8]:
    """Frames ``lo:hi`` of ``batch`` as pcap records (ns timestamps), one buffer."""
    hi = len(batch) if hi is None else hi
    off = batch.offsets[lo:hi]
    cap = batch.cap_lens[lo:hi].astype(np.int64)
    tagged = (batch.vlan_tpid[lo:hi] != 0) & (cap >= _MAC_PAIR) & (batch.linktype == LINKTYPE_ETHERNET)
    extra = np.where(tagged, 4, 0)
    rec_len = _RECORD.itemsize + cap + extra
    starts = np.zeros(off.shape[0], np.int64)
    np.cumsum(rec_len[:-1], out=starts[1:])
    out = np.empty(int(rec_len.sum()), np.uint8)
    head = np.empty(off.shape[0], _RECORD)
    ts = batch.ts_ns[lo:hi]
    head["ts_sec"] = ts // 1_000_000_000
    head["ts_nsec"] = ts % 1_000_000_000
    head["incl_len"] = cap + extra
    head["orig_len"] = batch.wire_lens[lo:hi].astype(np.int64) + extra
    out[starts[:, None] + np.arange(_RECORD.itemsize)] = head.view(np.uint8).reshape(-1, _RECORD.itemsize)
    data = starts + _RECORD.itemsize
    if not tagged.any():
        out[_ragged(data, cap)] = batch.buf[_ragged(off, cap)]
        return out
    first = np.where(tagged, _MAC_PAIR, cap)
    out[_ragged(data, first)] = batch.buf[_ragged(off, first)]
    rest = cap - first
    out[_ragged(data + first + extra, rest)] = batch.buf[_ragged(off + first, rest)]
    t = np.flatnonzero(tagged)
    tag = np.empty((t.shape[0], 4), np.uint8)
    tag[:, 0:2] = batch.vlan_tpid[lo:hi][t].astype(">u2").view(np.uint8).reshape(-1, 2)
    tag[:, 2:4] = batch.vlan_tci[lo:hi][t].astype(">u2").view(np.uint8).reshape(-1, 2)
    out[(data[t] + _MAC_PAIR)[:, None] + np.arange(4)] = tag
    return out


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
                data = pcap_records(batch, lo, hi)
                view = memoryview(data.data)
                while view:
                    view = view[os.write(self._fd, view):]
                self._size += data.shape[0]
                self._frames += hi - lo
                self._bytes += data.shape[0]
            lo = hi
            if lo < n:
                self._close()

    def close(self) -> None:
        self._close()

    def stats(self) -> ArchiveStats:
        return ArchiveStats(self._files, self._frames, self._bytes)
