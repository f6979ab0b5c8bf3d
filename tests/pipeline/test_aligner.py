"""The aligner: parts in any arrival order -> whole (interval, sensor) batches in event-time order."""

from __future__ import annotations

import numpy as np

from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE, FlowBatch
from darknet_iodef.pipeline.aligner import PartitionAligner

S = 1_000_000_000
MIN = 60 * S


def part(interval: int, sensor: str, rows: list[int], stats: dict[str, int] | None = None) -> FlowBatch:
    flows = np.zeros(len(rows), FLOW_DTYPE)
    flows["packet_count"] = rows
    return FlowBatch(interval * MIN, MIN, sensor, flows, np.zeros(0, SAMPLE_DTYPE), stats or {})


def ids(batches: list[FlowBatch]) -> list[tuple[int, str, list[int]]]:
    return [(b.interval_start_ns // MIN, b.sensor, b.flows["packet_count"].tolist()) for b in batches]


def test_an_interval_is_released_once_every_sensor_passed_it() -> None:
    a = PartitionAligner(lag_ns=10 * MIN)
    assert a.add(0, part(0, "b", [1])) == []
    assert a.add(1, part(0, "a", [2], {"packets": 5})) == []
    assert a.add(2, part(0, "a", [3], {"packets": 2})) == []  # a second part of the same interval
    assert a.add(3, part(1, "b", [4])) == []  # b has passed 0, a has not
    out = a.add(4, part(1, "a", [5]))
    assert ids(out) == [(0, "a", [2, 3]), (0, "b", [1])]  # sorted by sensor, parts joined in offset order
    assert out[0].stats == {"packets": 7}
    assert a.first_held_offset() == 3
    assert ids(a.drain()) == [(1, "a", [5]), (1, "b", [4])]


def test_a_sensor_far_behind_is_not_waited_for_and_its_parts_come_late() -> None:
    a = PartitionAligner(lag_ns=2 * MIN)
    a.add(0, part(0, "slow", [1]))
    a.add(1, part(0, "fast", [2]))
    assert a.add(2, part(1, "fast", [3])) == []
    assert a.add(3, part(2, "fast", [4])) == []
    out = a.add(4, part(3, "fast", [5]))  # slow is 3 intervals behind: more than the 2 allowed
    assert ids(out) == [(0, "fast", [2]), (0, "slow", [1]), (1, "fast", [3]), (2, "fast", [4])]
    assert ids(a.add(5, part(1, "slow", [6]))) == [(1, "slow", [6])] and a.late_parts == 1


def test_a_named_sensor_is_waited_for_before_it_speaks() -> None:
    unnamed = PartitionAligner(lag_ns=10 * MIN)
    named = PartitionAligner(lag_ns=10 * MIN, expected=frozenset({"a", "b"}))
    for i in range(3):
        assert len(unnamed.add(i, part(i, "a", [i]))) == (1 if i else 0)
        assert named.add(i, part(i, "a", [i])) == []
    assert ids(named.add(3, part(0, "b", [9]))) == []
    assert ids(named.add(4, part(1, "b", [8]))) == [(0, "a", [0]), (0, "b", [9])]


def test_a_part_read_twice_is_held_once() -> None:
    a = PartitionAligner(lag_ns=10 * MIN)
    p = part(0, "a", [1])
    a.add(0, p, b"message-bytes")
    a.add(0, p, b"message-bytes")
    assert a.duplicate_parts == 1
    assert ids(a.drain()) == [(0, "a", [1])]
