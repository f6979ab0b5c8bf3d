"""A progress bar on stderr when it is a terminal; silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Bytes-of-input progress: ``update(n)`` as data is consumed, ``close()`` at the end.

    Redraws at most 5 times a second so it never shows in a profile.
    """

    def __init__(self, total_bytes: int, label: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(total_bytes, 1)
        self.label = label
        self.done = 0
        self.packets = 0
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, nbytes: int, packets: int = 0) -> None:
        self.done += nbytes
        self.packets += packets
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width)
        rate = self.packets / max(now - self._start, 1e-9)
        self.stream.write(
            f"\r{self.label} [{bar:<{width}}] {frac:6.1%} {self.packets:,} packets {rate / 1e6:.2f} Mpps"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
