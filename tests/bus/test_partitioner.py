"""Kafka's default partitioner, reproduced: same partition on both buses and in any Kafka client."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from darknet_iodef.bus import murmur2, partition_for, partitions_of_addresses

# Utils.murmur2 results of the Java client (Apache Kafka's UtilsTest), as signed 32-bit ints
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "signed"), sorted(JAVA_VECTORS.items()))
def test_murmur2_matches_the_java_client(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF


@given(st.binary(max_size=64), st.integers(1, 64))
def test_partition_matches_kafka_python(key: bytes, partitions: int) -> None:
    assert murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF
    assert partition_for(key, partitions) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions


def test_vectorised_addresses_match_one_by_one() -> None:
    rng = np.random.default_rng(3)
    addrs = rng.integers(0, 256, size=(2000, 16), dtype=np.uint8)
    addrs[:5, :12] = np.frombuffer(b"\0" * 10 + b"\xff\xff", np.uint8)  # IPv4-mapped rows
    for n in (1, 2, 7, 8):
        got = partitions_of_addresses(addrs, n)
        assert got.tolist() == [partition_for(bytes(row), n) for row in addrs]


def test_partition_edge_cases() -> None:
    assert partition_for(None, 5) == 0
    assert partition_for(b"", 1) == 0
    with pytest.raises(ValueError):
        partition_for(b"x", 0)
    with pytest.raises(ValueError):
        partitions_of_addresses(np.zeros((3, 4), np.uint8), 2)
    assert partitions_of_addresses(np.zeros((0, 16), np.uint8), 3).shape == (0,)
