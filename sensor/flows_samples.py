"""Keep each source's first K packets of an interval as probe samples, in bulk.

Theory of operation: tool fingerprints (DOMAIN.md section 4: ZMap's IP ID,
Masscan's IP ID formula, Mirai's seq == destination, Nmap's window and
options) need raw fields of a few probes per source, and they must require
several matching probes, so we keep the first K per source and interval. The
order is (timestamp, arrival number): a total order that depends only on the
packets, never on how they were split into batches, so selecting per batch
and re-selecting over the survivors gives the same K rows as selecting over
the whole interval at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from darknet_iodef.flowtuple import SAMPLE_DTYPE
from sensor.flows_fold import concat_rows, take_rows

__all__ = ["Candidates", "first_per_source"]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Sample rows with their arrival numbers, ordered by (source, ts, seq)."""

    rows: npt.NDArray[np.void]  # SAMPLE_DTYPE
    seq: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, SAMPLE_DTYPE), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(concat_rows([p.rows for p in parts]), np.concatenate([p.seq for p in parts]))

    def select(self, k: int) -> Candidates:
        """Keep the first ``k`` rows of each source."""
        keep = first_per_source(self.rows["src_ip"], self.rows["ts_ns"], self.seq, k)
        return Candidates(take_rows(self.rows, keep), self.seq[keep])


def first_per_source(
    src_ip: npt.NDArray[np.void],
    ts_ns: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    k: int,
) -> npt.NDArray[np.intp]:
    """Indices of the first ``k`` rows of each source in (ts, seq) order.

    The indices come sorted by (source, ts, seq). When timestamps and arrival
    numbers are already non-decreasing (a batch in time order, the usual
    case) a single stable sort by source is enough.
    """
    n = seq.shape[0]
    if n == 0 or k == 0:
        return np.zeros(0, dtype=np.intp)
    be = np.ascontiguousarray(src_ip).view(">u8").reshape(-1, 2)
    src_lo = be[:, 1].astype(np.uint64)
    src_hi = be[:, 0]
    one_word = bool(np.all(src_hi == src_hi[0]))  # all IPv4 (or one IPv6 /64)
    in_order = bool(np.all(ts_ns[1:] >= ts_ns[:-1]) and np.all(seq[1:] > seq[:-1]))
    if one_word and in_order:
        order = np.argsort(src_lo, kind="stable")
    elif one_word:
        order = np.lexsort((seq, ts_ns, src_lo))
    else:
        order = np.lexsort((seq, ts_ns, src_lo, src_hi.astype(np.uint64)))
    lo = src_lo[order]
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.not_equal(lo[1:], lo[:-1], out=new[1:])
    if not one_word:
        hi = src_hi[order]
        new[1:] |= hi[1:] != hi[:-1]
    starts = np.flatnonzero(new)
    if starts.shape[0] == n:  # every row its own source: all kept
        return order
    rank = np.arange(n) - starts[np.cumsum(new) - 1]
    return order[rank < k]
