"""Key -> partition, identical for the in-memory bus and Kafka.

Theory of operation: Kafka's default partitioner sends a keyed record to
``toPositive(murmur2(key)) % partitions`` (MurmurHash2, seed 0x9747b28c, as in
the Java client's ``Utils.murmur2``). Both bus implementations choose the
partition here, explicitly, so a record lands in the same partition whichever
bus carries it and whichever client library the producer uses, and so that all
flow records of one source address meet in one aggregator.

:func:`partitions_of_addresses` is the same hash over many 16-byte addresses at
once (numpy, uint32 arithmetic wraps like Java's int), for the sensor, which
splits each flow batch by the partition of its source addresses.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["murmur2", "partition_for", "partitions_of_addresses"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as an unsigned 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes | None, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Kafka's default for keyed records).

    Records without a key all go to partition 0: they carry nothing that must
    meet, and a fixed choice keeps replays identical.
    """
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    if key is None:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partitions_of_addresses(addrs: npt.NDArray[np.uint8], partitions: int) -> npt.NDArray[np.int64]:
    """``partition_for(bytes(row), partitions)`` for every row of an (N, 16) uint8 array."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    a = np.ascontiguousarray(addrs, dtype=np.uint8)
    if a.ndim != 2 or a.shape[1] != 16:
        raise ValueError(f"expected an (N, 16) array of addresses, got shape {a.shape}")
    words = a.view("<u4").astype(np.uint32)  # (N, 4) little-endian words
    m = np.uint32(_M)
    h = np.full(a.shape[0], (_SEED ^ 16) & _MASK, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for j in range(4):
            k = words[:, j] * m
            k ^= k >> np.uint32(24)
            k *= m
            h *= m
            h ^= k
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
    return (h & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
