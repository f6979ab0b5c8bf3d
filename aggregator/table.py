"""Columnar keyed state: one numpy array per field, a :class:`KeyIndex` on top.

Theory of operation: a detector declares its columns once (name, dtype,
initial value). Rows are appended in bulk for the new keys of a batch and
dropped in bulk by :meth:`Table.compact` (expiry, eviction), which also
rebuilds the index. Columns grow by an eighth at a time, one column at a
time, so a table of ten million rows never briefly needs twice its size. :meth:`state` and
:meth:`restore` expose the live rows as plain arrays for checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aggregator.keyindex import KeyIndex

__all__ = ["Column", "Table"]


@dataclass(frozen=True, slots=True)
class Column:
    dtype: str
    fill: int | float = 0


class Table:
    """Rows keyed by unique uint64 keys; ``cols[name][:size]`` are the live rows."""

    __slots__ = ("_schema", "cols", "index", "size")

    def __init__(self, schema: Mapping[str, Column], capacity: int = 1024) -> None:
        self._schema = dict(schema)
        self._schema["key"] = Column("<u8")
        self.cols: dict[str, npt.NDArray] = {
            name: np.full(capacity, c.fill, dtype=c.dtype) for name, c in self._schema.items()
        }
        self.index = KeyIndex(capacity)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.cols.values()) + self.index.nbytes

    def _grow(self, need: int) -> None:
        cap = self.cols["key"].shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap + cap // 8, 1024)
        for name, c in self._schema.items():
            old = self.cols[name]
            arr = np.full(new_cap, c.fill, dtype=c.dtype)
            arr[: self.size] = old[: self.size]
            self.cols[name] = arr

    def upsert(self, keys: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Rows for unique ``keys`` (new rows get the columns' initial values)."""
        rows, new = self.index.insert(keys, self.size)
        n_new = int(new.sum())
        if n_new:
            self._grow(self.size + n_new)
            self.cols["key"][rows[new]] = keys[new]
            self.size += n_new
        return rows, new

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        return self.index.lookup(keys)

    def compact(self, keep: npt.NDArray[np.bool_]) -> int:
        """Keep the live rows where ``keep``; returns how many were dropped."""
        dropped = int(self.size - keep.sum())
        if dropped == 0:
            return 0
        idx = np.flatnonzero(keep)
        for name, c in self._schema.items():
            col = self.cols[name]
            kept = col[idx]
            col[: idx.shape[0]] = kept
            col[idx.shape[0] : self.size] = c.fill
        self.size = idx.shape[0]
        self.index.rebuild(self.cols["key"][: self.size], np.arange(self.size, dtype=np.int64))
        return dropped

    def state(self, prefix: str) -> dict[str, npt.NDArray]:
        return {f"{prefix}.{name}": np.ascontiguousarray(col[: self.size]) for name, col in self.cols.items()}

    def restore(self, prefix: str, arrays: Mapping[str, npt.NDArray]) -> None:
        n = int(arrays[f"{prefix}.key"].shape[0])
        self.size = 0
        self._grow(n)
        for name, c in self._schema.items():
            col = self.cols[name]
            col[:] = c.fill
            col[:n] = arrays[f"{prefix}.{name}"]
        self.size = n
        self.index.rebuild(self.cols["key"][:n], np.arange(n, dtype=np.int64))
