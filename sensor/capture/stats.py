"""Counters a capture read keeps: what was read, what was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sensor.fields import Status

__all__ = ["CaptureStats"]


@dataclass(slots=True)
class CaptureStats:
    """Mutable counters for one or more capture reads.

    ``records`` counts packet records read from the files (``bytes`` their
    file bytes, headers included); ``by_status`` counts decoded frames per
    :class:`~sensor.fields.Status` reason (``Status.OK`` included);
    ``unknown_linktypes`` counts frames per link type the decoder does not
    know (each is also reported once in ``warnings``). ``warnings`` holds
    one-line messages naming file, byte offset and reason.
    """

    files: int = 0
    records: int = 0
    bytes: int = 0
    by_status: dict[Status, int] = field(default_factory=dict)
    unknown_linktypes: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: record-walk lanes that had started on a header-like pattern inside a payload
    lanes_redone: int = 0

    def warn(self, line: str) -> None:
        self.warnings.append(line)

    def count_batch(self, status: npt.NDArray[np.uint8], linktype: npt.NDArray[np.uint16],
                    source: str = "") -> None:
        """Add one decoded batch's ``status`` column (and unknown link types)."""
        # nearly every frame is OK: count the others (a cheap pass), OK is what is left
        bad = status[np.flatnonzero(status)]  # (OK is 0) one pass over the column, no mask
        counts = np.bincount(bad, minlength=len(Status))
        counts[Status.OK] = status.size - bad.size
        for reason in Status:
            c = int(counts[reason])
            if c:
                self.by_status[reason] = self.by_status.get(reason, 0) + c
        if counts[Status.UNKNOWN_LINKTYPE]:
            kinds, per = np.unique(linktype[status == Status.UNKNOWN_LINKTYPE], return_counts=True)
            for lt, c in zip(kinds.tolist(), per.tolist(), strict=True):
                if lt not in self.unknown_linktypes:
                    where = f"{source}: " if source else ""
                    self.warn(f"{where}link type {lt} is not supported; its packets are counted and skipped")
                self.unknown_linktypes[lt] = self.unknown_linktypes.get(lt, 0) + c

    @property
    def packets(self) -> int:
        """Frames decoded (every status)."""
        return sum(self.by_status.values())

    def summary(self) -> str:
        """One line for logs: records, bytes and the non-OK reasons."""
        bad = ", ".join(f"{s.name.lower()}={c}" for s, c in sorted(self.by_status.items()) if s != Status.OK)
        return (f"{self.files} file(s), {self.records} records, {self.bytes} bytes, "
                f"{self.by_status.get(Status.OK, 0)} decoded" + (f", skipped: {bad}" if bad else ""))
