"""Addresses as integer keys for the columnar state, in bulk.

Theory of operation: the flow record stores addresses as 16 bytes
(IPv4-mapped for IPv4). State tables are keyed by uint64:

- an IPv4 address is its own key (below 2^32), so IPv4 state is exact;
- an IPv6 address is a 63-bit hash of its 128 bits with the top bit set, so
  it never equals an IPv4 key. Two IPv6 addresses share a key with
  probability ~k^2 / 2^64 for k addresses (1e-7 for a million): accepted,
  and the 16 bytes are stored beside the key for output.

Destinations are counted in 32-bit form (``dst32``): the IPv4 address, or a
32-bit hash of the IPv6 address (a collision only makes a distinct count one
lower). The dark-side "/16" of a destination (backscatter attacker count) is
the top 16 bits of IPv4, or a 16-bit hash of the IPv6 /48.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aggregator.keyindex import mix64

__all__ = ["addr_halves", "addr_key", "dst32", "dst32_of_halves", "key_of_halves", "net16", "v4_part"]

_V6_FLAG = np.uint64(1 << 63)
_LOW63 = np.uint64((1 << 63) - 2)  # clears the low bit too: a key is never all ones
_MAPPED_HI = np.uint64(0)
_MAPPED_LO_TOP = np.uint64(0xFFFF)


def addr_halves(addrs: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """``V16`` addresses -> (high, low) 64-bit halves, big-endian numeric order."""
    raw = np.ascontiguousarray(addrs).view(">u8").reshape(-1, 2)
    return raw[:, 0].astype(np.uint64), raw[:, 1].astype(np.uint64)


def v4_part(lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    return lo & np.uint64(0xFFFF_FFFF)


def _is_v4(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    return (hi == _MAPPED_HI) & ((lo >> np.uint64(32)) == _MAPPED_LO_TOP)


def addr_key(addrs: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """uint64 state keys of ``V16`` addresses, and which ones are IPv4."""
    return key_of_halves(*addr_halves(addrs))


def key_of_halves(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """:func:`addr_key` from precomputed :func:`addr_halves`."""
    is4 = _is_v4(hi, lo)
    key = v4_part(lo)
    if not is4.all():
        v6 = ~is4
        h = mix64(mix64(hi[v6]) ^ lo[v6])
        key[v6] = (h & _LOW63) | _V6_FLAG
    return key, is4


def dst32(addrs: npt.NDArray[np.void]) -> npt.NDArray[np.uint64]:
    """Destination in 32 bits: IPv4 itself, IPv6 hashed (as uint64 values < 2^32)."""
    return dst32_of_halves(*addr_halves(addrs))


def dst32_of_halves(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    is4 = _is_v4(hi, lo)
    out = v4_part(lo)
    if not is4.all():
        v6 = ~is4
        out[v6] = mix64(mix64(hi[v6]) ^ lo[v6]) >> np.uint64(32)
    return out


def net16(addrs: npt.NDArray[np.void]) -> npt.NDArray[np.uint64]:
    """The dark-side network of a destination: IPv4 /16, or the IPv6 /48 hashed to 16 bits."""
    hi, lo = addr_halves(addrs)
    is4 = _is_v4(hi, lo)
    out = v4_part(lo) >> np.uint64(16)
    if not is4.all():
        v6 = ~is4
        out[v6] = mix64(hi[v6] >> np.uint64(16)) >> np.uint64(48)
    return out
