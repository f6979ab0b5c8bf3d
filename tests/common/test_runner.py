"""The runner's failure policy on the in-memory bus, with an injected sleep (no real waiting)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import pytest
from prometheus_client import CollectorRegistry

from darknet_iodef.bus import MemoryBus, Message, TopicPartition
from darknet_iodef.bus.deadletter import decode_dead_letter
from darknet_iodef.errors import RecordError, TransientError
from darknet_iodef.metrics import StageMetrics
from darknet_iodef.runner import Backoff, Output, Publisher, Runner, Stage, Stopped

IN, OUT, DEAD, GROUP = "in", "out", "dead", "group"


class Upper(Stage):
    """Stateless: upper-cases each value; ``poison`` values fail to decode, ``bug`` values raise."""

    name = "upper"

    def __init__(self, bus: MemoryBus | None = None, bugs: int = 0) -> None:
        self.bus = bus
        self.bugs = bugs  # how many times a b"bug" message raises before it works
        self.calls: list[bytes] = []

    def process(self, message: Message) -> list[Output]:
        self.calls.append(message.value)
        if message.value == b"poison":
            raise RecordError(message.where, "value", "not a record")
        if message.value == b"bug" and self.bugs:
            self.bugs -= 1
            raise RuntimeError("stage bug")
        return [Output(OUT, message.key, message.value.upper())]


def make_bus(values: Iterable[bytes], partitions: int = 1) -> MemoryBus:
    bus = MemoryBus({IN: partitions, OUT: 1, DEAD: 1})
    p = bus.producer()
    for v in values:
        p.send(IN, b"k", v)
    p.flush()
    return bus


def make_runner(bus: MemoryBus, stage: Stage, sleep: list[float] | None = None, **kw: object) -> Runner:
    delays = sleep if sleep is not None else []
    return Runner(stage, bus.consumer(GROUP, [IN]), bus.producer(), dead_letter_topic=DEAD,
                  backoff=Backoff(0.1, 1.0, jitter=0.0), poll_timeout=0.0, sleep=delays.append,
                  **kw)  # type: ignore[arg-type]


def values(bus: MemoryBus, topic: str = OUT) -> list[bytes]:
    return [m.value for m in bus.messages(topic)]


def committed(bus: MemoryBus) -> dict[TopicPartition, int]:
    return dict(bus._groups[GROUP].committed)


def test_transient_poll_failures_back_off_exponentially_then_work() -> None:
    bus = make_bus([b"a", b"b"])
    bus.available = False
    delays: list[float] = []

    def sleep(d: float) -> None:
        delays.append(d)
        if len(delays) == 6:
            bus.available = True  # the broker is back after six retries

    runner = Runner(Upper(), bus.consumer(GROUP, [IN]), bus.producer(), dead_letter_topic=DEAD,
                    backoff=Backoff(0.1, 1.0, jitter=0.0), poll_timeout=0.0, sleep=sleep)
    stats = runner.run(until_end=True)
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]  # bounded, never a tight loop
    assert (stats.retries, stats.consumed, stats.produced, stats.commits) == (6, 2, 2, 1)
    assert values(bus) == [b"A", b"B"]
    assert committed(bus) == {(IN, 0): 2}


def test_backoff_jitter_stays_within_bounds() -> None:
    b = Backoff(0.2, 10.0, jitter=0.5, rng=random.Random(5))
    delays = [b.next() for _ in range(40)]
    for n, d in enumerate(delays):
        base = min(10.0, 0.2 * 2**n)
        assert base * 0.5 <= d <= base
    assert max(delays) <= 10.0
    b.reset()
    assert b.next() <= 0.2
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


def test_nothing_is_committed_until_the_outputs_are_flushed() -> None:
    bus = make_bus([b"a", b"b", b"c"])
    seen_commits: list[dict[TopicPartition, int]] = []

    class BrokerGoesAway(Upper):
        def process(self, message: Message) -> list[Output]:
            if message.offset == 2:
                bus.available = False  # between the poll and the flush
            return super().process(message)

    def sleep(d: float) -> None:
        seen_commits.append(committed(bus))
        if len(seen_commits) == 3:
            bus.available = True

    runner = Runner(BrokerGoesAway(), bus.consumer(GROUP, [IN]), bus.producer(), dead_letter_topic=DEAD,
                    backoff=Backoff(0.1, 1.0, jitter=0.0), poll_timeout=0.0, sleep=sleep)
    stats = runner.run(until_end=True)
    assert seen_commits == [{}, {}, {}]  # while the flush failed, no offset moved
    assert values(bus) == [b"A", b"B", b"C"]  # the producer kept the outputs: each exactly once
    assert committed(bus) == {(IN, 0): 3}
    assert stats.retries == 3


def test_poison_is_dead_lettered_and_counted_and_the_rest_goes_on() -> None:
    bus = make_bus([b"a", b"poison", b"c"])
    registry = CollectorRegistry()
    metrics = StageMetrics.create("upper", registry)
    stats = make_runner(bus, Upper(), metrics=metrics).run(until_end=True)
    assert values(bus) == [b"A", b"C"]
    (letter,) = [decode_dead_letter(m.value) for m in bus.messages(DEAD)]
    assert letter.reason == "in[0]@1: value: not a record"
    assert letter.original.value == b"poison"
    assert (stats.dead_letters, stats.retries) == (1, 0)
    assert committed(bus) == {(IN, 0): 3}
    sample = registry.get_sample_value
    assert sample("darknet_upper_dead_letter_messages_total", {"error": "RecordError"}) == 1
    assert sample("darknet_upper_consumed_messages_total", {"topic": IN}) == 3
    assert sample("darknet_upper_produced_messages_total", {"topic": OUT}) == 2
    assert sample("darknet_upper_produced_messages_total", {"topic": DEAD}) == 1
    assert sample("darknet_upper_processing_duration_seconds_count") == 3


def test_a_stage_bug_is_retried_then_dead_lettered_never_a_crash_loop() -> None:
    bus = make_bus([b"a", b"bug", b"c"])
    stage = Upper(bugs=1)  # fails once, then works
    delays: list[float] = []
    stats = make_runner(bus, stage, delays).run(until_end=True)
    assert values(bus) == [b"A", b"BUG", b"C"]
    assert stage.calls == [b"a", b"bug", b"bug", b"c"]
    assert (delays, stats.dead_letters) == ([0.1], 0)

    bus = make_bus([b"a", b"bug", b"c"])
    stage = Upper(bugs=99)  # always fails: after three attempts it is dead-lettered
    delays = []
    stats = make_runner(bus, stage, delays, max_attempts=3).run(until_end=True)
    assert values(bus) == [b"A", b"C"]
    assert stage.calls == [b"a", b"bug", b"bug", b"bug", b"c"]
    assert delays == [0.1, 0.2]
    (letter,) = [decode_dead_letter(m.value) for m in bus.messages(DEAD)]
    assert (letter.error, letter.reason) == ("RuntimeError", "in[0]@1: stage bug")
    assert committed(bus) == {(IN, 0): 3}


def test_transient_error_from_the_stage_retries_the_same_message() -> None:
    bus = make_bus([b"a", b"b"])
    failures = [TransientError("peer away"), TransientError("peer away")]

    class Flaky(Upper):
        def process(self, message: Message) -> list[Output]:
            if message.value == b"b" and failures:
                raise failures.pop()
            return super().process(message)

    delays: list[float] = []
    make_runner(bus, Flaky(), delays).run(until_end=True)
    assert values(bus) == [b"A", b"B"]
    assert delays == [0.1, 0.2]


class Crash(BaseException):
    """Stands for the process dying (kill -9) in the middle of a batch."""


def test_no_message_is_lost_when_the_process_dies_mid_batch() -> None:
    bus = make_bus([b"%d" % i for i in range(5)])

    class DiesOnThree(Upper):
        def process(self, message: Message) -> list[Output]:
            if message.value == b"3":
                raise Crash()
            return super().process(message)

    first = make_runner(bus, DiesOnThree(), max_records=2)
    with pytest.raises(Crash):
        first.run(until_end=True)
    # batch [0, 1] was flushed and committed; of batch [2, 3] only 2 ran and nothing was flushed
    assert values(bus) == [b"0", b"1"]
    assert committed(bus) == {(IN, 0): 2}
    first.consumer.close()  # the group notices the dead member
    second = make_runner(bus, Upper(), max_records=2)
    second.run(until_end=True)
    assert values(bus) == [b"0", b"1", b"2", b"3", b"4"]
    assert committed(bus) == {(IN, 0): 5}


class Pairs(Stage):
    """Stateful: emits the concatenation of every two messages of a partition."""

    name = "pairs"

    def __init__(self) -> None:
        self.open: dict[TopicPartition, list[Message]] = {}

    def process(self, message: Message) -> list[Output]:
        held = self.open.setdefault((message.topic, message.partition), [])
        held.append(message)
        if len(held) < 2:
            return []
        del self.open[(message.topic, message.partition)]
        return [Output(OUT, None, b"".join(m.value for m in held))]

    def finish(self) -> list[Output]:
        out = [Output(OUT, None, b"".join(m.value for m in held)) for held in self.open.values()]
        self.open.clear()
        return out

    def held_offsets(self) -> Mapping[TopicPartition, int]:
        return {tp: held[0].offset for tp, held in self.open.items()}


def test_a_stateful_stage_commits_only_what_it_no_longer_holds() -> None:
    bus = make_bus([b"a", b"b", b"c"])
    runner = make_runner(bus, Pairs())
    assert runner.step() == 3
    assert values(bus) == [b"ab"]
    assert committed(bus) == {(IN, 0): 2}  # c (offset 2) is only in memory: not committed
    runner.consumer.close()
    # a restart re-reads c; with the end of the input, finish emits it
    make_runner(bus, Pairs()).run(until_end=True)
    assert values(bus) == [b"ab", b"c"]
    assert committed(bus) == {(IN, 0): 3}


def test_stop_during_a_backoff_commits_nothing_more() -> None:
    bus = make_bus([b"a"])
    bus.available = False
    runner = Runner(Upper(), bus.consumer(GROUP, [IN]), bus.producer(), dead_letter_topic=DEAD,
                    backoff=Backoff(0.1, 1.0, jitter=0.0), poll_timeout=0.0)

    def stop_then_wait(_: float) -> None:
        runner.stop.set()

    runner._sleep = stop_then_wait
    stats = runner.run()
    assert (stats.consumed, stats.commits) == (0, 0)
    bus.available = True
    assert committed(bus) == {}


def test_lag_is_published_per_partition() -> None:
    bus = make_bus([b"a", b"b", b"c"], partitions=2)
    registry = CollectorRegistry()
    runner = make_runner(bus, Upper(), metrics=StageMetrics.create("upper", registry), max_records=1)
    runner.step()
    lag = {p: registry.get_sample_value("darknet_upper_consumer_lag_messages", {"topic": IN, "partition": p})
           for p in ("0", "1")}
    ends = bus.end_offsets(IN)
    assert lag == {"0": float(ends[0]), "1": float(ends[1])}  # measured before the first poll


def test_partitions_that_move_away_are_revoked_from_the_stage() -> None:
    bus = make_bus([b"a", b"b", b"c", b"d"], partitions=2)

    revoked_parts: list[frozenset[TopicPartition]] = []

    class Tracks(Upper):
        def revoked(self, partitions: frozenset[TopicPartition]) -> None:
            revoked_parts.append(partitions)

    stage = Tracks()
    runner = make_runner(bus, stage)
    runner.step()
    assert runner.consumer.assignment() == {(IN, 0), (IN, 1)}
    other = bus.consumer(GROUP, [IN])  # a second member joins: range assignment gives it partition 1
    runner.step()
    assert revoked_parts == [frozenset({(IN, 1)})]
    assert other.assignment() == {(IN, 1)}
    other.close()


def test_publisher_waits_out_an_outage_and_keeps_everything() -> None:
    bus = MemoryBus({OUT: 2})
    bus.available = False
    delays: list[float] = []

    def sleep(d: float) -> None:
        delays.append(d)
        if len(delays) == 4:
            bus.available = True

    publisher = Publisher(bus.producer(), name="sensor", backoff=Backoff(0.1, 1.0, jitter=0.0), sleep=sleep)
    publisher.publish([Output(OUT, b"a", b"1"), Output(OUT, None, b"2", partition=1)])
    assert delays == [0.1, 0.2, 0.4, 0.8]
    assert [(m.partition, m.value) for m in bus.messages(OUT)] == [(0, b"1"), (1, b"2")]
    assert (publisher.published, publisher.retries) == (2, 4)
    publisher.publish([Output(OUT, b"a", b"3")])
    assert delays == [0.1, 0.2, 0.4, 0.8]  # no retry needed: the backoff was reset
    assert values(bus) == [b"1", b"3", b"2"]


def test_publisher_stops_when_asked_while_waiting() -> None:
    bus = MemoryBus({OUT: 1})
    bus.available = False
    publisher = Publisher(bus.producer(), name="sensor", backoff=Backoff(0.01, 0.01))
    publisher.stop.set()
    with pytest.raises(Stopped):
        publisher.publish([Output(OUT, b"a", b"1")])
    assert publisher.producer.pending() == 1  # kept, not dropped


def test_a_partition_read_again_from_its_start_commits_its_new_position() -> None:
    """A broker that lost its storage starts the topic again at offset 0; commits must follow."""
    bus = make_bus([b"%d" % i for i in range(5)])
    runner = make_runner(bus, Upper())
    runner.step()
    assert committed(bus) == {(IN, 0): 5}
    bus.forget()
    producer = bus.producer()
    for v in (b"x", b"y", b"z"):
        producer.send(IN, b"k", v)
    producer.flush()
    assert runner.step() == 3
    assert committed(bus) == {(IN, 0): 3}  # not 5: the old position would skip the new topic's records
    assert values(bus) == [b"X", b"Y", b"Z"]
