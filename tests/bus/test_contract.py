"""Contract tests: the same expectations of the in-memory bus and of Kafka (tansu).

Every test here runs twice (``bus`` fixture: memory, kafka); a difference in
behaviour between the two implementations is a failing test.
"""

from __future__ import annotations

import json
import time
from typing import Any

from darknet_iodef.bus import Bus, Consumer, Message, partition_for
from darknet_iodef.bus.deadletter import decode_dead_letter
from darknet_iodef.errors import RecordError
from darknet_iodef.runner import Backoff, Output, Runner, Stage

KEYS = [f"198.51.100.{i}".encode() for i in range(40)]


def drain(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    """Poll until ``count`` messages arrived (a Kafka group takes ~3 s to form) or time is up."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out.extend(consumer.poll(max_records=100, timeout=0.5))
    return out


def wait_assigned(consumers: list[Consumer], partitions: int, timeout: float = 30.0) -> None:
    """Poll every member until the group's assignment covers ``partitions`` partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            assert c.poll(max_records=1, timeout=0.2) == []
        owned = [c.assignment() for c in consumers]
        if all(owned) and sum(len(o) for o in owned) == partitions:
            return
    raise AssertionError(f"group did not form: {[sorted(c.assignment()) for c in consumers]}")


def produce(bus: Bus, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = bus.producer()
    for key, value in records:
        p.send(topic, key, value)
    p.flush()
    assert p.pending() == 0
    p.close()


def test_keyed_records_land_in_the_key_partition_in_order(bus: Bus, names: Any) -> None:
    bus.ensure_topics([names.topic], 4)
    assert bus.partitions(names.topic) == 4
    # three rounds over the same keys: each key's values must come back in send order
    records = [(k, f"{k.decode()}#{r}".encode()) for r in range(3) for k in KEYS]
    produce(bus, names.topic, records)
    c = bus.consumer(names.group, [names.topic])
    got = drain(c, len(records))
    c.close()
    assert len(got) == 120
    for m in got:
        assert m.partition == partition_for(m.key, 4)
    for key in KEYS:
        assert [m.value for m in got if m.key == key] == [key + b"#0", key + b"#1", key + b"#2"]
    by_partition: dict[int, list[int]] = {}
    for m in got:
        by_partition.setdefault(m.partition, []).append(m.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    assert sorted(by_partition) == [0, 1, 2, 3]


def test_explicit_partition_is_kept(bus: Bus, names: Any) -> None:
    bus.ensure_topics([names.topic], 3)
    p = bus.producer()
    p.send(names.topic, b"any", b"v", partition=2)
    p.flush()
    c = bus.consumer(names.group, [names.topic])
    (m,) = drain(c, 1)
    c.close()
    assert (m.partition, m.offset, m.key, m.value) == (2, 0, b"any", b"v")


def test_a_member_that_leaves_without_committing_hands_its_messages_on(bus: Bus, names: Any) -> None:
    bus.ensure_topics([names.topic], 1)
    produce(bus, names.topic, [(b"k", b"%d" % i) for i in range(10)])
    first = bus.consumer(names.group, [names.topic])
    got = drain(first, 10)
    assert [m.value for m in got] == [b"%d" % i for i in range(10)]
    assert first.commit(got[:4]) is True  # done with 0..3; 4..9 read but not committed
    first.close()
    second = bus.consumer(names.group, [names.topic])
    again = drain(second, 6)
    assert [m.value for m in again] == [b"%d" % i for i in range(4, 10)]
    assert [m.offset for m in again] == list(range(4, 10))
    assert second.commit({(names.topic, 0): 10}) is True
    second.close()
    third = bus.consumer(names.group, [names.topic])
    wait_assigned([third], 1)
    assert third.poll(100, 0.5) == []
    assert third.at_end() is True
    third.close()


def test_two_members_share_the_partitions(bus: Bus, names: Any) -> None:
    bus.ensure_topics([names.topic], 4)
    a = bus.consumer(names.group, [names.topic])
    b = bus.consumer(names.group, [names.topic])
    wait_assigned([a, b], 4)
    assert a.assignment().isdisjoint(b.assignment())
    assert a.assignment() | b.assignment() == {(names.topic, p) for p in range(4)}
    records = [(k, k) for k in KEYS]
    produce(bus, names.topic, records)
    got_a, got_b = [], []
    deadline = time.monotonic() + 30
    while len(got_a) + len(got_b) < 40 and time.monotonic() < deadline:
        got_a += a.poll(100, 0.2)
        got_b += b.poll(100, 0.2)
    assert sorted(m.key for m in got_a + got_b) == sorted(KEYS)  # each exactly once
    assert {(m.topic, m.partition) for m in got_a} <= a.assignment()
    assert {(m.topic, m.partition) for m in got_b} <= b.assignment()
    assert got_a and got_b
    a.close()
    b.close()


def test_end_of_stream_is_visible(bus: Bus, names: Any) -> None:
    bus.ensure_topics([names.topic], 2)
    c = bus.consumer(names.group, [names.topic])
    wait_assigned([c], 2)
    assert c.at_end() is True
    # one flush per record: tansu reports a partition's end as its last record *batch*'s
    # base offset + 1, so only single-record batches give Kafka's exact end offsets there
    for key, value in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]:
        produce(bus, names.topic, [(key, value)])
    assert c.lag() == {(names.topic, 0): 3, (names.topic, 1): 0}  # murmur2 puts a, b, c in 0
    assert c.at_end() is False
    got = drain(c, 3)
    assert sorted(m.value for m in got) == [b"1", b"2", b"3"]
    assert c.poll(100, 0.3) == []
    assert c.at_end() is True
    assert c.lag() == {(names.topic, 0): 0, (names.topic, 1): 0}
    c.close()


class JsonDoubler(Stage):
    """A tiny stage: decodes a JSON number, outputs twice its value; a bad message is poison."""

    name = "doubler"

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def process(self, message: Message) -> list[Output]:
        try:
            n = json.loads(message.value)
        except ValueError:
            raise RecordError(message.where, "value", "not a JSON number") from None
        return [Output(self.out_topic, message.key, json.dumps(n * 2).encode())]


def test_poison_message_is_dead_lettered_with_its_reason(bus: Bus, names: Any) -> None:
    bus.ensure_topics([names.topic, names.out], 1)
    bus.ensure_topics([names.dead], 1)
    produce(bus, names.topic, [(b"k", b"1"), (b"k", b"\xffnot json"), (b"k", b"3")])
    consumer = bus.consumer(names.group, [names.topic])
    runner = Runner(JsonDoubler(names.out), consumer, bus.producer(), dead_letter_topic=names.dead,
                    backoff=Backoff(0.01, 0.05), poll_timeout=0.5)
    stats = runner.run(until_end=True)
    consumer.close()
    assert (stats.consumed, stats.produced, stats.dead_letters) == (3, 3, 1)
    check = bus.consumer(names.group + "-check", [names.out, names.dead])
    got = drain(check, 3)
    check.close()
    assert [m.value for m in got if m.topic == names.out] == [b"2", b"6"]
    (letter,) = [m for m in got if m.topic == names.dead]
    assert letter.key == b"k"
    d = decode_dead_letter(letter.value)
    assert (d.original.topic, d.original.partition, d.original.offset) == (names.topic, 0, 1)
    assert (d.original.key, d.original.value) == (b"k", b"\xffnot json")
    assert (d.stage, d.error) == ("doubler", "RecordError")
    assert d.reason == f"{names.topic}[0]@1: value: not a JSON number"
    # everything was committed: the group has nothing left to read
    again = bus.consumer(names.group, [names.topic])
    wait_assigned([again], 1)
    assert again.poll(100, 0.5) == []
    assert again.at_end() is True
    again.close()
