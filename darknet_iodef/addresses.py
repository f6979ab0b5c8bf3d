"""IP addresses in bulk, and the telescope's dark prefixes.

Theory of operation: every stage after the parser handles IPv4 and IPv6 alike
by storing addresses as 16 bytes in network order, IPv4 as IPv4-mapped IPv6
(``::ffff:a.b.c.d``, RFC 4291 section 2.5.5.2). Numpy arrays of addresses are
``(N, 16)`` uint8 or the structured ``V16`` field of the flow record; helpers
here convert in bulk, never one Python object per packet.

The telescope size *n* (number of dark IPv4 addresses) scales every detection
threshold and rate extrapolation (DOMAIN.md sections 3 and 4), so it is derived
here, once, from the configured prefixes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import ConfigError

__all__ = [
    "ADDR_DTYPE",
    "V4_MAPPED_PREFIX",
    "DarkPrefixes",
    "addr16_from_v4",
    "addr16_is_v4",
    "addr16_to_v4",
    "format_addr16",
    "parse_addr16",
]

#: one address: 16 raw bytes in network order
ADDR_DTYPE = np.dtype("V16")
#: the 12-byte prefix of IPv4-mapped addresses
V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_V4_PREFIX_ARR = np.frombuffer(V4_MAPPED_PREFIX, dtype=np.uint8)


def addr16_from_v4(v4: npt.NDArray[np.uint32]) -> npt.NDArray[np.void]:
    """uint32 host-order IPv4 addresses -> ``V16`` IPv4-mapped addresses."""
    v4 = np.asarray(v4, dtype=np.uint32)
    out = np.zeros((v4.shape[0], 16), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:16] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out.view(ADDR_DTYPE).reshape(-1)


def _as_bytes(addrs: npt.NDArray[np.void]) -> npt.NDArray[np.uint8]:
    return np.ascontiguousarray(addrs).view(np.uint8).reshape(-1, 16)


def addr16_is_v4(addrs: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """True where a ``V16`` address is IPv4-mapped."""
    raw = _as_bytes(addrs)
    return np.all(raw[:, :12] == _V4_PREFIX_ARR, axis=1)


def addr16_to_v4(addrs: npt.NDArray[np.void]) -> npt.NDArray[np.uint32]:
    """The low 32 bits of ``V16`` addresses as host-order uint32 (IPv4 part)."""
    raw = _as_bytes(addrs)
    return raw[:, 12:16].copy().view(">u4").reshape(-1).astype(np.uint32)


def parse_addr16(text: str) -> bytes:
    """``"192.0.2.1"`` or ``"2001:db8::1"`` -> 16 bytes (IPv4 mapped)."""
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return V4_MAPPED_PREFIX + ip.packed
    return ip.packed


def format_addr16(raw: bytes | np.void) -> str:
    """16 bytes -> the usual text form (dotted quad for IPv4-mapped)."""
    b = raw if isinstance(raw, bytes) else raw.tobytes()
    if b[:12] == V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(b[12:]))
    return str(ipaddress.IPv6Address(b))


@dataclass(frozen=True, slots=True)
class DarkPrefixes:
    """The telescope's dark prefixes, with bulk membership tests.

    IPv4 prefixes are kept as sorted, merged ``[start, end)`` ranges of
    uint32 so membership of a million addresses is one ``searchsorted``.
    """

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    v4_starts: npt.NDArray[np.uint64]
    v4_ends: npt.NDArray[np.uint64]

    @classmethod
    def parse(cls, spec: str | Iterable[str], setting: str = "darknet") -> DarkPrefixes:
        """Parse ``"198.18.0.0/15,2001:db8::/32"`` (or a list of CIDRs)."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in items:
            item = item.strip()
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=True))
            except ValueError as exc:
                raise ConfigError(setting, f"{item!r} is not a CIDR prefix ({exc})") from None
        if not nets:
            raise ConfigError(setting, "no dark prefix given")
        v4 = sorted(
            (int(n.network_address), int(n.broadcast_address) + 1)
            for n in nets
            if isinstance(n, ipaddress.IPv4Network)
        )
        merged: list[list[int]] = []
        for start, end in v4:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        starts = np.array([s for s, _ in merged], dtype=np.uint64)
        ends = np.array([e for _, e in merged], dtype=np.uint64)
        return cls(tuple(nets), starts, ends)

    @property
    def size_v4(self) -> int:
        """n: the number of dark IPv4 addresses (overlaps counted once)."""
        return int((self.v4_ends - self.v4_starts).sum())

    @property
    def size_v6(self) -> int:
        """The number of dark IPv6 addresses (overlaps counted once; may exceed 2^64)."""
        nets = sorted(self.v6_networks, key=lambda n: (int(n.network_address), -n.prefixlen))
        total, end = 0, -1
        for net in nets:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            if hi > end:
                total += hi - max(lo, end + 1) + 1
                end = hi
        return total

    @property
    def v6_networks(self) -> Sequence[ipaddress.IPv6Network]:
        return [n for n in self.networks if isinstance(n, ipaddress.IPv6Network)]

    def contains_v4(self, v4: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        """Bulk membership of host-order uint32 IPv4 addresses."""
        if self.v4_starts.size == 0:
            return np.zeros(np.shape(v4), dtype=bool)
        a = np.asarray(v4, dtype=np.uint64)
        idx = np.searchsorted(self.v4_starts, a, side="right") - 1
        ok = idx >= 0
        idx = np.clip(idx, 0, None)
        return ok & (a < self.v4_ends[idx])

    def contains_addr16(self, addrs: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
        """Bulk membership of ``V16`` addresses (IPv4-mapped or IPv6)."""
        is4 = addr16_is_v4(addrs)
        out = np.zeros(is4.shape, dtype=bool)
        if is4.any():
            out[is4] = self.contains_v4(addr16_to_v4(addrs[is4]))
        v6 = self.v6_networks
        if v6 and (~is4).any():
            raw = _as_bytes(addrs[~is4])
            hit = np.zeros(raw.shape[0], dtype=bool)
            for net in v6:
                hit |= _match_v6(raw, net)
            out[~is4] = hit
        return out

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.networks)


def _match_v6(raw: npt.NDArray[np.uint8], net: ipaddress.IPv6Network) -> npt.NDArray[np.bool_]:
    plen = net.prefixlen
    full, rem = divmod(plen, 8)
    want = np.frombuffer(net.network_address.packed, dtype=np.uint8)
    hit = np.all(raw[:, :full] == want[:full], axis=1)
    if rem:
        mask = np.uint8((0xFF << (8 - rem)) & 0xFF)
        hit &= (raw[:, full] & mask) == (want[full] & mask)
    return hit
