"""Labelled IP prefixes with bulk longest-match lookup.

Theory of operation: bogon registries and allow-lists are at most a few
thousand prefixes, the addresses to test are millions per interval. IPv4
prefixes are flattened once into sorted, non-overlapping ranges, each with
the label of its most specific covering prefix, so a lookup is one
``searchsorted``. IPv6 prefixes (few in practice) are matched one prefix at a
time over the whole address array, least specific first so that more specific
prefixes overwrite.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from aggregator.keys import addr_halves

__all__ = ["PrefixSet"]

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class PrefixSet:
    """Prefixes with an integer label each; ``lookup`` gives the label or -1."""

    __slots__ = ("_v4_labels", "_v4_starts", "_v6", "networks")

    def __init__(self, networks: Sequence[tuple[Net, int]]) -> None:
        self.networks = tuple(networks)
        v4 = sorted(
            ((n, lab) for n, lab in networks if isinstance(n, ipaddress.IPv4Network)),
            key=lambda item: item[0].prefixlen,
        )
        bounds = {0, 1 << 32}
        for n, _ in v4:
            bounds.add(int(n.network_address))
            bounds.add(int(n.broadcast_address) + 1)
        starts = np.array(sorted(bounds), dtype=np.uint64)
        labels = np.full(starts.shape[0], -1, dtype=np.int64)
        for n, lab in v4:
            lo = np.searchsorted(starts, int(n.network_address))
            hi = np.searchsorted(starts, int(n.broadcast_address) + 1)
            labels[lo:hi] = lab
        self._v4_starts = starts
        self._v4_labels = labels
        v6 = sorted(
            ((n, lab) for n, lab in networks if isinstance(n, ipaddress.IPv6Network)),
            key=lambda item: item[0].prefixlen,
        )
        self._v6 = [
            (
                np.uint64(int(n.network_address) >> 64),
                np.uint64(int(n.network_address) & ((1 << 64) - 1)),
                n.prefixlen,
                lab,
            )
            for n, lab in v6
        ]

    def __len__(self) -> int:
        return len(self.networks)

    def lookup_v4(self, v4: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        idx = np.searchsorted(self._v4_starts, np.asarray(v4, dtype=np.uint64), side="right") - 1
        return self._v4_labels[np.clip(idx, 0, None)]

    def lookup(self, addrs: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
        """Label of the most specific prefix holding each ``V16`` address (-1: none)."""
        return self.lookup_halves(*addr_halves(addrs))

    def lookup_halves(self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        is4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
        out = np.full(hi.shape[0], -1, dtype=np.int64)
        if is4.any():
            out[is4] = self.lookup_v4(lo[is4] & np.uint64(0xFFFF_FFFF))
        v6 = ~is4
        if self._v6 and v6.any():
            h6, l6 = hi[v6], lo[v6]
            sub = np.full(h6.shape[0], -1, dtype=np.int64)
            for net_hi, net_lo, plen, lab in self._v6:
                if plen <= 64:
                    mask = np.uint64(((1 << 64) - 1) ^ ((1 << (64 - plen)) - 1)) if plen else np.uint64(0)
                    hit = (h6 & mask) == (net_hi & mask)
                else:
                    mask = np.uint64(((1 << 64) - 1) ^ ((1 << (128 - plen)) - 1))
                    hit = (h6 == net_hi) & ((l6 & mask) == (net_lo & mask))
                sub[hit] = lab
            out[v6] = sub
        return out
