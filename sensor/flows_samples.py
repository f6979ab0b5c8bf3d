"""Keep each source's first K packets of an interval as probe samples, in bulk.

Theory of operation: tool fingerprints (DOMAIN.md section 4: ZMap's IP ID,
Masscan's IP ID formula, Mirai's seq == destination, Nmap's window and
options) need raw fields of a few probes per source, and they must require
several matching probes, so we keep the first K per source and interval --
and, besides those, the first K that carry a payload: some tools prove
themselves only there (masscan's UDP cookie sits in the request ID of its
DNS/SNMP/NBNS payloads, a few probes among a thousand empty ones), so a
source keeps at most 2K rows. The order is (timestamp, arrival number): a
total order that depends only on the packets, never on how they were split
into batches, so selecting per batch and re-selecting over the survivors
gives the same rows as selecting over the whole interval at once (each of
the two selections is a first-K, and the survivors of both contain both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from darknet_iodef.flowtuple import SAMPLE_DTYPE
from sensor.flows_bytes import concat_rows, take_rows

__all__ = ["Candidates", "first_per_source", "in_sorted", "sample_indices", "select_first", "sorted_union"]


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

    def select(self, k: int, ordered: bool = True) -> Candidates:
        """Keep each source's first ``k`` rows and first ``k`` with a payload.

        Sorted by (source, ts, seq) if ``ordered``, else in row order.
        """
        r = self.rows
        keep, _ = sample_indices(r["src_ip"], r["ts_ns"], self.seq, r["payload_len"] != 0, k)
        if ordered:
            # at most 2k rows a source are left: selecting 2k orders them all
            keep = keep[first_per_source(r["src_ip"][keep], r["ts_ns"][keep], self.seq[keep], 2 * k)]
        elif keep.shape[0] == len(self):
            return self
        return Candidates(take_rows(r, keep), self.seq[keep])


def sample_indices(
    src_ip: npt.NDArray[np.void],
    ts_ns: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    has_payload: npt.NDArray[np.bool_],
    k: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint64] | None]:
    """Ascending indices of each source's first ``k`` rows and first ``k`` rows with a payload.

    The second value is :func:`select_first`'s list of sources that hold ``k``
    rows (of any kind).
    """
    keep, full = select_first(src_ip, ts_ns, seq, k, ordered=False)
    pay = np.flatnonzero(has_payload)
    if pay.shape[0]:
        first_pay, _ = select_first(src_ip[pay], ts_ns[pay], seq[pay], k, ordered=False)
        extra = pay[first_pay]
        if not np.all(in_sorted(extra.astype(np.uint64), keep.astype(np.uint64))):
            keep = np.union1d(keep, extra)
    return keep, full


def first_per_source(
    src_ip: npt.NDArray[np.void],
    ts_ns: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    k: int,
    ordered: bool = True,
) -> npt.NDArray[np.intp]:
    """Indices of the first ``k`` rows of each source in (ts, seq) order (see select_first)."""
    return select_first(src_ip, ts_ns, seq, k, ordered)[0]


def select_first(
    src_ip: npt.NDArray[np.void],
    ts_ns: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    k: int,
    ordered: bool = True,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint64] | None]:
    """Indices of the first ``k`` rows of each source in (ts, seq) order.

    The indices come sorted by (source, ts, seq) when ``ordered``, else in
    ascending index order -- cheaper to gather (a streaming pass instead of a
    random one) when the caller only drops rows. A stable sort by source
    alone is enough when each source's rows already come in (ts, seq) order
    -- a batch in time order, or candidates concatenated push after push --
    and numpy's stable sort (timsort) is fast on such concatenated sorted
    runs; otherwise (reordered packets) a full sort on (source, ts, seq).

    Also returns, when every source is an IPv4-mapped address (the 8 high
    bytes zero), the sorted low words (bytes 8-15 read as little-endian
    uint64) of the sources that have at least ``k`` rows here: the caller can
    skip later, later-timed packets of those sources without sorting them.
    Otherwise None.
    """
    n = seq.shape[0]
    if n == 0 or k == 0:
        return np.zeros(0, dtype=np.intp), None
    be = np.ascontiguousarray(src_ip).view(">u8").reshape(-1, 2)
    src_lo = be[:, 1].astype(np.uint64)
    src_hi = be[:, 0]
    one_word = bool(np.all(src_hi == src_hi[0]))  # all IPv4 (or one IPv6 /64)
    by_source = (src_lo,) if one_word else (src_lo, src_hi.astype(np.uint64))
    order = np.lexsort(by_source)  # stable

    def runs(order: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """True where a sorted row starts a new source."""
        lo = src_lo[order]
        new = np.empty(n, dtype=bool)
        new[:1] = True
        np.not_equal(lo[1:], lo[:-1], out=new[1:])
        if not one_word:
            hi = src_hi[order]
            new[1:] |= hi[1:] != hi[:-1]
        return new

    new = runs(order)
    t, q = ts_ns[order], seq[order]
    backwards = (t[1:] < t[:-1]) | ((t[1:] == t[:-1]) & (q[1:] < q[:-1]))
    if np.any(backwards & ~new[1:]):
        keys = (seq, ts_ns, src_lo) if one_word else (seq, ts_ns, src_lo, src_hi.astype(np.uint64))
        order = np.lexsort(keys)
        new = runs(order)
    starts = np.flatnonzero(new)
    full: npt.NDArray[np.uint64] | None = None
    if one_word and src_hi[0] == 0:
        sizes = np.diff(np.append(starts, n))
        heads = order[starts[sizes >= k]]
        full = np.sort(np.ascontiguousarray(src_ip[heads]).view("<u8").reshape(-1, 2)[:, 1])
    if starts.shape[0] == n:  # every row its own source: all kept
        return (order if ordered else np.arange(n)), full
    rank = np.arange(n) - starts[np.cumsum(new) - 1]
    keep = order[rank < k]
    if ordered:
        return keep, full
    return (np.arange(n) if keep.shape[0] == n else np.sort(keep)), full


def in_sorted(values: npt.NDArray[np.uint64], sorted_set: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """Membership of ``values`` in a sorted array (one binary search each)."""
    if sorted_set.shape[0] == 0:
        return np.zeros(values.shape[0], dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_set, values), sorted_set.shape[0] - 1)
    return sorted_set[idx] == values


def sorted_union(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Sorted distinct values of two arrays (a sort, not np.unique: see flows.count_distinct_addresses)."""
    both = np.sort(np.concatenate([a, b]))
    if both.shape[0] < 2:
        return both
    keep = np.empty(both.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(both[1:], both[:-1], out=keep[1:])
    return both[keep]
