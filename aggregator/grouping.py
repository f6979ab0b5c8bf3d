"""Group-by on uint64 keys with numpy: one sort, then ``reduceat`` per column."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Groups", "group"]


@dataclass(frozen=True, slots=True)
class Groups:
    keys: npt.NDArray[np.uint64]  # unique keys, ascending
    inv: npt.NDArray[np.int64]  # group of each input element
    order: npt.NDArray[np.int64]  # input positions sorted by key
    starts: npt.NDArray[np.int64]  # first sorted position of each group

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def sum(self, values: npt.NDArray) -> npt.NDArray:
        return np.add.reduceat(values[self.order], self.starts) if len(self) else values[:0]

    def min(self, values: npt.NDArray) -> npt.NDArray:
        return np.minimum.reduceat(values[self.order], self.starts) if len(self) else values[:0]

    def max(self, values: npt.NDArray) -> npt.NDArray:
        return np.maximum.reduceat(values[self.order], self.starts) if len(self) else values[:0]

    def first(self, values: npt.NDArray) -> npt.NDArray:
        """The value of each group's first element (in input order if grouped ``stable``)."""
        return values[self.order[self.starts]]


def group(keys: npt.NDArray[np.uint64], stable: bool = False) -> Groups:
    """Group equal keys. ``stable``: :meth:`Groups.first` is the first in input order
    (otherwise some element of the group, the same one for the same input)."""
    keys = np.asarray(keys, dtype=np.uint64)
    n = keys.shape[0]
    order = np.argsort(keys, kind="stable" if stable else "quicksort")
    sk = keys[order]
    if n:
        boundary = np.empty(n, dtype=bool)
        boundary[0] = True
        np.not_equal(sk[1:], sk[:-1], out=boundary[1:])
        starts = np.flatnonzero(boundary)
        gid_sorted = np.cumsum(boundary) - 1
    else:
        starts = np.zeros(0, dtype=np.int64)
        gid_sorted = np.zeros(0, dtype=np.int64)
    inv = np.empty(n, dtype=np.int64)
    inv[order] = gid_sorted
    return Groups(sk[starts], inv, order.astype(np.int64), starts.astype(np.int64))
