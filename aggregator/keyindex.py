"""A numpy open-addressing hash index from uint64 keys to row numbers.

Theory of operation: detector state is columnar (one numpy array per field,
one row per source, vector or port) so ten million sources cost tens of
bytes each, not a Python object each. This index maps a uint64 key to its
row. It is probed in bulk: all keys of a batch advance together through
linear probing, one vectorised step per probe distance, so the Python loop
runs a few dozen times per batch whatever its size. The load factor stays
at or below 3/4 (expected probes for a miss ~8.5), which keeps 10 million
keys in 2^24 slots of 12 bytes (a set needs 8): ~200 MB.

Keys must be unique within one call (callers group a batch first) and must
not be ``EMPTY`` (all ones); :func:`mix64` spreads them over the slots.
Rows are never removed one by one: the owner compacts its columns and
calls :meth:`KeyIndex.rebuild` (deletion in open addressing needs tombstones;
a rebuild is one bulk insert and happens rarely).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["EMPTY", "KeyIndex", "mix64"]

EMPTY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_U64 = np.uint64
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_PLACE_CHUNK = 1 << 20


def mix64(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser: a bijection that spreads nearby keys apart."""
    z = np.asarray(keys, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> _U64(30)
        z *= _M1
        z ^= z >> _U64(27)
        z *= _M2
        z ^= z >> _U64(31)
    return z


def _size_for(count: int) -> int:
    size = 1024
    while count * 4 > size * 3:
        size *= 2
    return size


class KeyIndex:
    """uint64 key -> int64 row, bulk lookup and insert."""

    __slots__ = ("_count", "_mask", "_rows", "_slots", "_with_rows")

    def __init__(self, capacity: int = 1024, with_rows: bool = True) -> None:
        self._with_rows = with_rows
        self._alloc(_size_for(capacity))
        self._count = 0

    def _alloc(self, size: int) -> None:
        self._slots = np.full(size, EMPTY, dtype=np.uint64)
        self._rows = np.full(size if self._with_rows else 0, -1, dtype=np.int32)
        self._mask = np.uint64(size - 1)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return int(self._slots.nbytes + self._rows.nbytes)

    def _probe(
        self, keys: npt.NDArray[np.uint64], insert: bool
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        n = keys.shape[0]
        where = np.full(n, -1, dtype=np.int64)
        new = np.zeros(n, dtype=bool)
        pos = (mix64(keys) & self._mask).astype(np.int64)
        active = np.arange(n)
        mask = int(self._mask)
        while active.size:
            p = pos[active]
            k = keys[active]
            sk = self._slots[p]
            hit = sk == k
            where[active[hit]] = p[hit]
            empty = sk == EMPTY
            resolved = hit.copy()
            if insert and empty.any():
                e_act = active[empty]
                e_pos = p[empty]
                # several new keys may claim one empty slot: the last write wins, the
                # others see a foreign key there next round and probe on (no sort needed)
                e_keys = keys[e_act]
                self._slots[e_pos] = e_keys
                won = self._slots[e_pos] == e_keys
                winners = e_act[won]
                where[winners] = e_pos[won]
                new[winners] = True
                won_all = np.zeros(n, dtype=bool)
                won_all[winners] = True
                resolved |= won_all[active]
                move = ~hit & ~empty
            else:
                resolved |= empty
                move = ~hit & ~empty
            pos[active[move]] = (p[move] + 1) & mask
            active = active[~resolved]
        return where, new

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Rows of ``keys`` (-1 where absent)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return np.zeros(0, dtype=np.int64)
        where, _ = self._probe(keys, insert=False)
        out = np.full(keys.shape[0], -1, dtype=np.int64)
        ok = where >= 0
        if self._with_rows:
            out[ok] = self._rows[where[ok]]
        else:
            out[ok] = 0
        return out

    def insert(
        self, keys: npt.NDArray[np.uint64], first_row: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Rows of unique ``keys``; absent ones get rows ``first_row, first_row+1, ...``.

        Returns (rows, is_new). New rows are numbered in the order of ``keys``.
        """
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        self._reserve(self._count + keys.shape[0])
        where, new = self._probe(keys, insert=True)
        n_new = int(new.sum())
        self._count += n_new
        if not self._with_rows:
            return np.zeros(0, dtype=np.int64), new
        new_rows = np.arange(first_row, first_row + n_new, dtype=np.int32)
        self._rows[where[new]] = new_rows
        return self._rows[where].astype(np.int64), new

    def add(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Set semantics: insert unique ``keys``; True where a key was new."""
        _, new = self.insert(keys, self._count)
        return new

    def _reserve(self, count: int) -> None:
        if count * 4 <= self._slots.shape[0] * 3:
            return
        used = self._slots != EMPTY
        keys = self._slots[used]
        rows = self._rows[used] if self._with_rows else None
        del used
        self._slots = self._rows = np.zeros(0, dtype=np.uint64)  # free before the new table
        self._alloc(_size_for(count))
        self._count = 0
        self._place(keys, np.zeros(0, np.int64) if rows is None else rows)

    def _place(self, keys: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64]) -> None:
        # in chunks: the probe's temporaries are ~60 bytes a key, so re-placing ten
        # million keys at once would briefly cost more than the table itself
        for lo in range(0, keys.shape[0], _PLACE_CHUNK):
            part = keys[lo : lo + _PLACE_CHUNK]
            where, _ = self._probe(part, insert=True)
            if self._with_rows and rows.size:
                self._rows[where] = rows[lo : lo + _PLACE_CHUNK]
            self._count += part.shape[0]

    def keys(self) -> npt.NDArray[np.uint64]:
        return self._slots[self._slots != EMPTY].copy()

    def items(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """All (keys, rows), in slot order (rows are 0 for a set)."""
        used = self._slots != EMPTY
        rows = self._rows[used].astype(np.int64) if self._with_rows else np.zeros(int(used.sum()), np.int64)
        return self._slots[used].copy(), rows

    def rebuild(self, keys: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64] | None = None) -> None:
        """Replace the contents (after the owner compacted its columns)."""
        keys = np.asarray(keys, dtype=np.uint64)
        self._alloc(_size_for(keys.shape[0]))
        self._count = 0
        self._place(keys, np.zeros(keys.shape[0], np.int64) if rows is None else np.asarray(rows, np.int64))
