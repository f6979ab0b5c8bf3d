"""Group flow rows by key and sum their values, in bulk (the flow builder's kernel).

Theory of operation: the builder makes one FLOW_DTYPE row per packet (count 1,
first = last = its timestamp, one slot set) and this module groups rows with
equal keys (DOMAIN.md section 2: Corsaro's FlowTuple key plus the fields the
detectors need). The key bytes of a 120-byte flow row are read as ten 64-bit
words (:data:`KEY_WORDS`, one of them masked), each key gets a 64-bit hash
(multiply-xorshift, a fixed function, so the result never depends on the
platform or the run); rows are sorted by hash and rows with equal hashes are
reduced. Sorting one uint64 column is far cheaper than sorting 120-byte
records. A hash collision is detected exactly (adjacent equal hashes whose
key words differ) and then that call falls back to a full lexicographic sort,
so the grouping is always exact. Either way groups come out ordered by (hash,
key words): a function of the set of keys only, which is what makes the
builder's output independent of how the input was split into batches.

Rows stay flow rows all the way -- a :class:`Folded` is flow rows plus their
hashes -- so closing an interval writes nothing new: every pass over a
structured array costs about 4 ns per row and field here (measured), and a
separate key layout cost one more full copy of every flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from darknet_iodef.flowtuple import FLOW_DTYPE
from sensor.flows_bytes import concat_rows, put_column, take_rows

__all__ = [
    "KEY_FIELDS",
    "KEY_MASKS",
    "KEY_WORDS",
    "VALUE_FIELDS",
    "Folded",
    "fold",
    "hash_keys",
    "merge",
    "to_flows",
]

#: FLOW_DTYPE's value fields: everything else (but padding) is the key
VALUE_FIELDS = ("first_ns", "last_ns", "packet_count", "slot_counts")
KEY_FIELDS: tuple[str, ...] = tuple(
    n for n in FLOW_DTYPE.names or () if n not in VALUE_FIELDS and not n.startswith("_")
)


def _key_words() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(word index, mask) of every 8-byte word of a flow row that holds key bytes."""
    assert FLOW_DTYPE.itemsize % 8 == 0
    is_key = np.zeros(FLOW_DTYPE.itemsize, dtype=bool)
    for name in KEY_FIELDS:
        dt, off = FLOW_DTYPE.fields[name][:2]  # type: ignore[index]
        is_key[off : off + dt.itemsize] = True
    words, masks = [], []
    for w in range(FLOW_DTYPE.itemsize // 8):
        bits = is_key[8 * w : 8 * w + 8]
        if bits.any():
            words.append(w)
            masks.append(sum(0xFF << (8 * i) for i in range(8) if bits[i]))
    return tuple(words), tuple(masks)


#: the 64-bit words of a flow row holding its key, and which bytes of each
KEY_WORDS, KEY_MASKS = _key_words()
_ROW_WORDS = FLOW_DTYPE.itemsize // 8
_FULL = (1 << 64) - 1

# splitmix64 / murmur3 finaliser constants
_MUL1 = np.uint64(0x9E3779B97F4A7C15)
_MUL2 = np.uint64(0xBF58476D1CE4E5B9)
_MUL3 = np.uint64(0x94D049BB133111EB)


def _row_words(rows: npt.NDArray[np.void]) -> npt.NDArray[np.uint64]:
    return np.ascontiguousarray(rows).view(np.uint64).reshape(-1, _ROW_WORDS)


def _key_columns(words: npt.NDArray[np.uint64]) -> list[npt.NDArray[np.uint64]]:
    """The (masked) key words of row words, one column each."""
    return [
        words[:, w] if m == _FULL else words[:, w] & np.uint64(m)
        for w, m in zip(KEY_WORDS, KEY_MASKS, strict=True)
    ]


def hash_keys(rows: npt.NDArray[np.void]) -> npt.NDArray[np.uint64]:
    """A fixed 64-bit hash of the key of each FLOW_DTYPE row."""
    words = _row_words(rows)
    h = np.zeros(words.shape[0], dtype=np.uint64)
    for col in _key_columns(words):
        h ^= col
        h *= _MUL1
        h ^= h >> np.uint64(31)
    h ^= h >> np.uint64(30)
    h *= _MUL2
    h ^= h >> np.uint64(27)
    h *= _MUL3
    h ^= h >> np.uint64(31)
    return h


@dataclass(frozen=True, slots=True)
class Folded:
    """Flow rows (FLOW_DTYPE) with distinct keys, ordered by (hash, key), and their hashes."""

    rows: npt.NDArray[np.void]
    hashes: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return int(self.hashes.shape[0])

    @classmethod
    def empty(cls) -> Folded:
        return cls(np.zeros(0, FLOW_DTYPE), np.zeros(0, np.uint64))


def _keys_differ(words: npt.NDArray[np.uint64], a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]) -> bool:
    """Whether any row ``a[i]`` has another key than row ``b[i]``."""
    for w, m in zip(KEY_WORDS, KEY_MASKS, strict=True):
        x, y = words[a, w], words[b, w]
        if m != _FULL:
            x, y = x & np.uint64(m), y & np.uint64(m)
        if np.any(x != y):
            return True
    return False


def _group(
    rows: npt.NDArray[np.void], hashes: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Group equal keys: (order, run starts in ``order``, run of each sorted row).

    Runs come in (hash, key) order.
    """
    n = hashes.shape[0]
    order = np.argsort(hashes, kind="stable")
    hs = hashes[order]
    same = hs[1:] == hs[:-1]
    if same.any():
        # equal hashes must mean equal keys: compare each such row with the one before
        pos = np.flatnonzero(same)
        words = _row_words(rows)
        if _keys_differ(words, order[pos], order[pos + 1]):
            # a 64-bit collision between different keys: exact lexicographic sort
            cols = _key_columns(words)
            order = np.lexsort([*reversed(cols), hashes])
            hs = hashes[order]
            same = hs[1:] == hs[:-1]
            for col in cols:
                c = col[order]
                same &= c[1:] == c[:-1]
    brk = np.empty(n, dtype=bool)
    brk[:1] = True
    np.logical_not(same, out=brk[1:])
    return order, np.flatnonzero(brk), np.cumsum(brk) - 1


def _reduce(rows: npt.NDArray[np.void], hashes: npt.NDArray[np.uint64]) -> Folded:
    """Group rows by key and combine their values (sum, min, max, sum of slots)."""
    n = hashes.shape[0]
    if n == 0:
        return Folded.empty()
    order, starts, run = _group(rows, hashes)
    if starts.shape[0] == n:  # every key distinct: only reorder
        return Folded(take_rows(rows, order), hashes[order])
    pick = order[starts]
    out = take_rows(rows, pick)
    # rows that repeat an earlier key (sorted positions)
    dup = np.flatnonzero(run[1:] == run[:-1]) + 1
    reductions = (
        ("packet_count", np.add),
        ("first_ns", np.minimum),
        ("last_ns", np.maximum),
        ("slot_counts", np.add),
    )
    if dup.size * 4 < n:
        # reduceat pays per group; with mostly single-row groups, fold the few
        # repeats into the first row of their group with ufunc.at
        src = take_rows(rows, order[dup])
        for name, ufunc in reductions:
            col = out[name]
            ufunc.at(col, run[dup], src[name])
    else:
        ordered = take_rows(rows, order)
        for name, ufunc in reductions:
            put_column(out, name, ufunc.reduceat(ordered[name], starts, axis=0))
    return Folded(out, hashes[pick])


def fold(rows: npt.NDArray[np.void]) -> Folded:
    """Fold one-packet flow rows (count 1, first = last = ts, one slot) into flows."""
    return _reduce(rows, hash_keys(rows))


def merge(parts: list[Folded]) -> Folded:
    """Merge partial sums of one interval into one Folded (same grouping)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Folded.empty()
    if len(parts) == 1:
        return parts[0]
    return _reduce(concat_rows([p.rows for p in parts]), np.concatenate([p.hashes for p in parts]))


def to_flows(f: Folded) -> npt.NDArray[np.void]:
    """The flow rows, in the Folded's (hash, key) order.

    That order depends only on the set of keys, so batches compare byte for
    byte. It is not meaningful to people: sorting by address would cost a
    random-order pass over every flow (measured: half of the builder's time
    on a /16 scan), so readers that want address order sort themselves.
    """
    return f.rows
