"""Open a capture file, undoing gzip/bzip2/xz compression found by magic number.

This is the I/O edge of the capture readers: it hands out raw bytes in
bounded chunks (``ChunkReader``) and never interprets them.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import CaptureError

__all__ = ["CHUNK_BYTES", "PAD_BYTES", "ChunkReader", "open_capture"]

#: bytes read per chunk: bounds peak memory whatever the file size
CHUNK_BYTES = 8 << 20
#: zero bytes kept after the valid data so fixed-size reads past a frame's end stay in bounds
PAD_BYTES = 1024

_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def open_capture(path: str | os.PathLike[str]) -> tuple[BinaryIO, BinaryIO, str]:
    """Open ``path``; return (decompressed stream, raw file for progress, compression name)."""
    name = os.fspath(path)
    try:
        raw: BinaryIO = open(name, "rb")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise CaptureError(name, "", f"cannot open: {exc.strerror or exc}") from None
    head = raw.read(6)
    raw.seek(0)
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            if kind == "gzip":
                return gzip.GzipFile(fileobj=raw, mode="rb"), raw, kind  # type: ignore[return-value]
            if kind == "bzip2":
                return bz2.BZ2File(raw, "rb"), raw, kind  # type: ignore[return-value]
            return lzma.LZMAFile(raw, "rb"), raw, kind  # type: ignore[return-value]
    return raw, raw, ""


class ChunkReader:
    """A reusable byte buffer refilled from a stream, keeping an unconsumed tail.

    ``buf[:end]`` holds valid data; ``base`` is the file offset of ``buf[0]``
    (after decompression), so ``base + i`` names a byte in error messages.
    ``buf[end:end + PAD_BYTES]`` is always zero.
    """

    def __init__(self, stream: BinaryIO, source: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.stream = stream
        self.source = source
        self.capacity = max(chunk_bytes, 1 << 20)  # > the largest record
        self.buf: npt.NDArray[np.uint8] = np.zeros(self.capacity + PAD_BYTES, dtype=np.uint8)
        self.base = 0
        self.end = 0
        self.eof = False

    def _read_into(self, view: memoryview) -> int:
        got = 0
        try:
            while got < len(view):
                n = self.stream.readinto(view[got:])  # type: ignore[attr-defined]
                if not n:
                    self.eof = True
                    break
                got += n
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise CaptureError(self.source, f"offset {self.base + self.end + got}",
                               f"cannot read: {exc}") from None
        return got

    def fill(self, keep_from: int) -> int:
        """Drop ``buf[:keep_from]``, move the rest to the front, read more. Returns bytes read."""
        keep = self.end - keep_from
        if keep_from:
            self.buf[:keep] = self.buf[keep_from:self.end]
            self.base += keep_from
        self.end = keep
        got = 0
        if not self.eof and self.end < self.capacity:
            got = self._read_into(memoryview(self.buf.data)[self.end:self.capacity])
            self.end += got
        self.buf[self.end:self.end + PAD_BYTES] = 0
        return got

    def grow(self, need: int) -> None:
        """Make room for at least ``need`` valid bytes (a block larger than a chunk)."""
        if need <= self.capacity:
            return
        new = np.zeros(need + PAD_BYTES, dtype=np.uint8)
        new[:self.end] = self.buf[:self.end]
        self.buf = new
        self.capacity = need
