"""HyperLogLog sketches for the few sources past the exact-count cap.

Theory of operation: distinct dark destinations are counted exactly (a hash
set of (source, destination)) up to ``scan_exact_cap`` per source. A source
past the cap -- on a telescope of millions of addresses, a full-space scanner
reaches millions -- would cost 8+ bytes per destination; instead it gets one
HyperLogLog row (Flajolet et al. 2007; 2^12 one-byte registers = 4 KB,
standard error 1.04 / sqrt(4096) = 1.6 %), seeded with the destinations it
had, and updated in bulk. Rows live in one 2D array; a source serial maps to
its row.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from aggregator.keyindex import mix64

__all__ = ["HllRows", "P"]

P = 12
M = 1 << P
_ALPHA = 0.7213 / (1 + 1.079 / M)
_SALT = np.uint64(0x5BD1E9955BD1E995)
_LOW = np.uint64((1 << (64 - P)) - 1)


def _index_rho(values: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    h = mix64(np.asarray(values, dtype=np.uint64) ^ _SALT)
    idx = (h >> np.uint64(64 - P)).astype(np.int64)
    w = h & _LOW  # 52 bits: exact as float64
    # rho = leading zeros of the 52-bit remainder + 1 (frexp: w = f * 2^e, 0.5 <= f < 1)
    _, e = np.frexp(w.astype(np.float64))
    rho = np.where(w == 0, 64 - P + 1, (64 - P) - e + 1)
    return idx, rho.astype(np.uint8)


class HllRows:
    """One HyperLogLog row per owner id (a source serial)."""

    __slots__ = ("_row_of", "regs")

    def __init__(self) -> None:
        self.regs = np.zeros((0, M), dtype=np.uint8)
        self._row_of: dict[int, int] = {}

    def __contains__(self, owner: int) -> bool:
        return owner in self._row_of

    def __len__(self) -> int:
        return len(self._row_of)

    def owners(self) -> list[int]:
        return list(self._row_of)

    def add(self, owners: npt.NDArray[np.uint64], values: npt.NDArray[np.uint64]) -> None:
        """Add ``values[i]`` to the sketch of ``owners[i]`` (rows are created as needed)."""
        if owners.size == 0:
            return
        for o in np.unique(owners).tolist():
            if o not in self._row_of:
                self._row_of[o] = len(self._row_of)
        if self.regs.shape[0] < len(self._row_of):
            grown = np.zeros((max(len(self._row_of), 2 * self.regs.shape[0]), M), dtype=np.uint8)
            grown[: self.regs.shape[0]] = self.regs
            self.regs = grown
        rows = np.array([self._row_of[o] for o in owners.tolist()], dtype=np.int64)
        idx, rho = _index_rho(values)
        np.maximum.at(self.regs, (rows, idx), rho)

    def estimate(self, owner: int) -> int:
        r = self.regs[self._row_of[owner]].astype(np.float64)
        e = _ALPHA * M * M / float(np.sum(np.exp2(-r)))
        zeros = int(np.count_nonzero(r == 0))
        if e <= 2.5 * M and zeros:
            e = M * math.log(M / zeros)  # small-range correction (linear counting)
        return round(e)

    def retain(self, owners: set[int]) -> None:
        """Drop the rows of owners not in ``owners`` (after their sources expired)."""
        keep = [(o, r) for o, r in self._row_of.items() if o in owners]
        regs = np.zeros((len(keep), M), dtype=np.uint8)
        for i, (_, r) in enumerate(keep):
            regs[i] = self.regs[r]
        self.regs = regs
        self._row_of = {o: i for i, (o, _) in enumerate(keep)}

    def state(self) -> tuple[npt.NDArray[np.uint8], list[int]]:
        order = sorted(self._row_of.items(), key=lambda t: t[1])
        return self.regs[: len(order)].copy(), [o for o, _ in order]

    def restore(self, regs: npt.NDArray[np.uint8], owners: list[int]) -> None:
        self.regs = np.array(regs, dtype=np.uint8).reshape(-1, M)
        self._row_of = {int(o): i for i, o in enumerate(owners)}
