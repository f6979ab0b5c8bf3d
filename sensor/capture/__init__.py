"""Capture files -> batches of per-packet fields (``PACKET_DTYPE``), streamed.

The format is sniffed from the magic number, never the file name: classic
pcap (microsecond/nanosecond, either byte order) or pcapng, each possibly
gzip/bzip2/xz-compressed. Files are read in bounded chunks
(:data:`~sensor.capture.source.CHUNK_BYTES`), so peak memory does not grow
with file size. A file that cannot be read raises
:class:`~darknet_iodef.errors.CaptureError` naming file, offset and reason;
a truncated tail is a warning in :class:`CaptureStats` after the packets
before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import CaptureError
from sensor.capture.pcap import PCAP_MAGICS, iter_pcap, parse_pcap_header
from sensor.capture.pcapng import PCAPNG_MAGIC, iter_pcapng
from sensor.capture.source import CHUNK_BYTES, ChunkReader, open_capture
from sensor.capture.stats import CaptureStats

if TYPE_CHECKING:
    from sensor.progress import Progress

__all__ = ["CaptureError", "CaptureStats", "capture_sizes", "iter_packet_batches", "sniff_format"]


def capture_sizes(paths: Iterable[str]) -> list[int]:
    """The size in bytes of each capture (for the progress bar), or a CaptureError for the
    first one that is not there -- so a run fails before any work, not after hours."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError as exc:
            raise CaptureError(path, "", f"cannot open: {exc.strerror or exc}") from None
    return sizes


def sniff_format(head: bytes) -> str:
    """``"pcap"``, ``"pcapng"`` or ``""`` from the first 4 bytes (after decompression)."""
    if len(head) >= 4:
        magic = int.from_bytes(head[:4], "little")
        if magic in PCAP_MAGICS:
            return "pcap"
        if magic == PCAPNG_MAGIC:
            return "pcapng"
    return ""


def iter_packet_batches(path: str | os.PathLike[str], batch_size: int = 65536,
                        stats: CaptureStats | None = None, progress: Progress | None = None,
                        chunk_bytes: int = CHUNK_BYTES) -> Iterator[npt.NDArray[np.void]]:
    """Yield ``PACKET_DTYPE`` arrays (at most ``batch_size`` rows each) in file order."""
    source = os.fspath(path)
    stats = stats if stats is not None else CaptureStats()
    batch_size = max(1, int(batch_size))
    stream, raw, _kind = open_capture(source)
    with raw, stream:
        stats.files += 1
        reader = ChunkReader(stream, source, chunk_bytes)
        reader.fill(0)
        seen = [0]

        def on_chunk() -> None:
            if progress is not None:
                try:
                    now = raw.tell()
                except (OSError, ValueError):
                    return
                progress.update(now - seen[0])
                seen[0] = now

        head = reader.buf[:min(reader.end, 24)].tobytes()
        if not head:
            raise CaptureError(source, "offset 0", "empty file (no capture header)")
        kind = sniff_format(head)
        if kind == "pcap":
            hdr = parse_pcap_header(head, source)
            batches = iter_pcap(reader, hdr, batch_size, stats, on_chunk)
        elif kind == "pcapng":
            batches = iter_pcapng(reader, batch_size, stats, on_chunk)
        else:
            raise CaptureError(source, "offset 0",
                               f"not a pcap or pcapng file (magic number {head[:4].hex()})")
        for batch in batches:
            if progress is not None:
                progress.update(0, int(batch.size))
            yield batch
        on_chunk()
