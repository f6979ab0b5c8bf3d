"""Address spaces the generator draws from: dark prefixes, public sources, bogons.

Theory of operation: planted sources must be unambiguous ground truth, so
every "real" source is drawn from globally routable IPv4 space (outside the
special-purpose blocks below and outside the dark prefixes) and never reused
by another entity; spoofed floods draw from the bogon blocks on purpose.
The bogon table is the generator's own copy of the IANA IPv4 special-purpose
registry (RFC 6890 and successors, DOMAIN.md section 5): the generator must
not share code with the detectors it is the ground truth for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BOGON_V4", "DarkSpace", "SourcePool", "v4_text", "v6_text"]

#: non-routable IPv4 blocks (IANA special-purpose registry, multicast, class E)
BOGON_V4: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


def _ranges(cidrs: Sequence[str]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    nets = sorted(ipaddress.IPv4Network(c) for c in cidrs)
    starts = np.array([int(n.network_address) for n in nets], dtype=np.uint64)
    ends = np.array([int(n.broadcast_address) + 1 for n in nets], dtype=np.uint64)
    return starts, ends


def _in_ranges(
    addrs: npt.NDArray[np.uint32], starts: npt.NDArray[np.uint64], ends: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]:
    if starts.size == 0:
        return np.zeros(addrs.shape, dtype=bool)
    a = addrs.astype(np.uint64)
    idx = np.searchsorted(starts, a, side="right") - 1
    ok = idx >= 0
    return ok & (a < ends[np.clip(idx, 0, None)])


def v4_text(addr: int) -> str:
    return str(ipaddress.IPv4Address(int(addr)))


def v6_text(addr: bytes | npt.NDArray[np.uint8]) -> str:
    return str(ipaddress.IPv6Address(bytes(addr)))


@dataclass(frozen=True, slots=True)
class DarkSpace:
    """The telescope's dark prefixes, indexable as one dense address space."""

    v4: tuple[ipaddress.IPv4Network, ...]
    v6: tuple[ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, spec: str) -> DarkSpace:
        v4: list[ipaddress.IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            net = ipaddress.ip_network(item, strict=True)
            if isinstance(net, ipaddress.IPv4Network):
                v4.append(net)
            else:
                v6.append(net)
        if not v4:
            raise ValueError("the darknet needs at least one IPv4 prefix")
        for a in v4:
            for b in v4:
                if a is not b and a.overlaps(b):
                    raise ValueError(f"dark prefixes {a} and {b} overlap")
        return cls(tuple(v4), tuple(v6))

    @property
    def size_v4(self) -> int:
        return sum(n.num_addresses for n in self.v4)

    def __str__(self) -> str:
        return ",".join(str(n) for n in (*self.v4, *self.v6))

    def v4_at(self, index: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
        """Dark IPv4 address number ``index`` (0 .. size_v4-1), prefixes in order."""
        sizes = np.array([n.num_addresses for n in self.v4], dtype=np.int64)
        starts = np.array([int(n.network_address) for n in self.v4], dtype=np.int64)
        bounds = np.cumsum(sizes) - sizes
        which = np.searchsorted(bounds, index, side="right") - 1
        return (starts[which] + (index - bounds[which])).astype(np.uint32)

    def sample_v4(self, rng: np.random.Generator, n: int, distinct: bool = True) -> npt.NDArray[np.uint32]:
        size = self.size_v4
        if distinct:
            if n > size:
                raise ValueError(f"cannot pick {n} distinct addresses from {size} dark addresses")
            idx = rng.choice(size, size=n, replace=False)
        else:
            idx = rng.integers(0, size, size=n)
        return self.v4_at(np.asarray(idx, dtype=np.int64))

    def contains_v4(self, addrs: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        starts, ends = _ranges([str(n) for n in self.v4])
        return _in_ranges(addrs, starts, ends)

    def sample_v6(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.uint8]:
        """``n`` distinct addresses in the first IPv6 dark prefix, hosts low in the
        interface-identifier space as IPv6 scanners guess them (::1 .. ::ffff)."""
        net = self.v6[0]
        hosts = rng.choice(np.arange(1, 0x10000), size=n, replace=False)
        base = np.frombuffer(net.network_address.packed, dtype=np.uint8)
        out = np.repeat(base[None, :], n, axis=0)
        out[:, 14] = hosts >> 8
        out[:, 15] = hosts & 0xFF
        return out


class SourcePool:
    """Draws distinct globally routable IPv4 sources, never the same one twice."""

    def __init__(self, dark: DarkSpace) -> None:
        cidrs = [*BOGON_V4, *(str(n) for n in dark.v4)]
        self._starts, self._ends = _ranges(cidrs)
        self._used = np.zeros(0, dtype=np.uint32)

    def is_public(self, addrs: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        a = np.asarray(addrs, dtype=np.uint32)
        last = a & 0xFF
        # also avoid .0 and .255: corsaro tags such sources as spoofed (DOMAIN.md section 5)
        return ~_in_ranges(a, self._starts, self._ends) & (last != 0) & (last != 255)

    def draw(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.uint32]:
        out = np.zeros(0, dtype=np.uint32)
        while out.size < n:
            raw = rng.integers(1 << 24, 0xE0000000, size=int((n - out.size) * 1.3) + 16, dtype=np.uint64)
            cand = raw.astype(np.uint32)
            cand = cand[self.is_public(cand)]
            # keep the draw order (deterministic) while dropping repeats
            _, first = np.unique(cand, return_index=True)
            cand = cand[np.sort(first)]
            cand = cand[~np.isin(cand, self._used) & ~np.isin(cand, out)]
            out = np.concatenate([out, cand[: n - out.size]])
        self._used = np.concatenate([self._used, out])
        return out

    def draw_one(self, rng: np.random.Generator) -> int:
        return int(self.draw(rng, 1)[0])

    def bogons(self, rng: np.random.Generator, n: int, cidrs: Sequence[str]) -> npt.NDArray[np.uint32]:
        """``n`` addresses spread over the given (bogon) blocks."""
        nets = [ipaddress.IPv4Network(c) for c in cidrs]
        which = rng.integers(0, len(nets), size=n)
        base = np.array([int(x.network_address) for x in nets], dtype=np.uint64)[which]
        size = np.array([x.num_addresses for x in nets], dtype=np.uint64)[which]
        off = (rng.random(n) * size).astype(np.uint64)
        return (base + off).astype(np.uint32)
