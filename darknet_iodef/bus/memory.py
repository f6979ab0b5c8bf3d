"""The in-memory bus: partitions, offsets, consumer groups and commits in one process.

It is the default transport (the whole pipeline in one process) and the
broker that stage tests run against; it keeps the semantics of
:mod:`darknet_iodef.bus.base` exactly as Kafka does, including the awkward
ones: records become visible when flushed, a rebalance sends every member of
the group back to the group's committed offsets (Kafka's eager protocol), and
a commit for a partition the member no longer owns is refused.

``available = False`` simulates a broker that is away: poll, flush, commit and
ensure_topics raise :class:`~darknet_iodef.errors.TransientError` and keep
their buffers, which is how the runner's retry policy is tested without
sockets. Everything is guarded by one condition variable, so stages may run
in threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from darknet_iodef.bus.base import Message, TopicPartition, next_offsets
from darknet_iodef.bus.partitioner import partition_for
from darknet_iodef.errors import TransientError

__all__ = ["MemoryBus", "MemoryConsumer", "MemoryProducer"]


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    assignment: dict[int, frozenset[TopicPartition]] = field(default_factory=dict)
    generation: int = 0


class MemoryBus:
    """Topics as lists of partitions, groups with range assignment, one lock."""

    def __init__(
        self, topic_partitions: Mapping[str, int] | None = None, default_partitions: int = 1
    ) -> None:
        self._cond = threading.Condition()
        self._logs: dict[str, list[list[Message]]] = {}
        self._groups: dict[str, _Group] = {}
        self._ids = itertools.count(1)
        self._declared = dict(topic_partitions or {})
        self._default_partitions = default_partitions
        self.available = True

    # -- admin -------------------------------------------------------------------------------
    def ensure_topics(self, names: Sequence[str], partitions: int | None = None) -> None:
        with self._cond:
            self._check_available("ensure_topics")
            for name in names:
                self._create(name, partitions)

    def partitions(self, topic: str) -> int:
        with self._cond:
            return len(self._create(topic, None))

    def topics(self) -> list[str]:
        with self._cond:
            return sorted(self._logs)

    def end_offsets(self, topic: str) -> list[int]:
        with self._cond:
            return [len(p) for p in self._logs.get(topic, [])]

    def messages(self, topic: str) -> list[Message]:
        """Every record of ``topic`` in (partition, offset) order (for tests and ``run``)."""
        with self._cond:
            return [m for part in self._logs.get(topic, []) for m in part]

    def forget(self) -> None:
        """Lose every topic and commit, as a broker restarted on empty storage does (for tests)."""
        with self._cond:
            self._logs.clear()
            for group in self._groups.values():
                group.committed.clear()
                self._rebalance(group)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(self, group: str, topics: Sequence[str]) -> MemoryConsumer:
        return MemoryConsumer(self, group, topics)

    def close(self) -> None:
        pass

    # -- internals (called with the lock held) --------------------------------------------------
    def _check_available(self, what: str) -> None:
        if not self.available:
            raise TransientError(f"in-memory bus is unavailable ({what})")

    def _create(self, name: str, partitions: int | None) -> list[list[Message]]:
        log = self._logs.get(name)
        if log is None:
            n = partitions or self._declared.get(name) or self._default_partitions
            log = self._logs[name] = [[] for _ in range(n)]
            for group in self._groups.values():
                if any(name in m.topics for m in group.members):
                    self._rebalance(group)  # a subscribed topic appeared: its partitions need owners
        return log

    def _append(self, records: Sequence[tuple[str, bytes | None, bytes, int | None]]) -> None:
        now = int(time.time() * 1000)
        for topic, key, value, partition in records:
            log = self._create(topic, None)
            p = partition_for(key, len(log)) if partition is None else partition
            if not 0 <= p < len(log):
                raise ValueError(f"topic {topic} has {len(log)} partitions, not partition {p}")
            log[p].append(Message(topic, p, len(log[p]), key, value, now))
        self._cond.notify_all()

    def _join(self, group_name: str, member: MemoryConsumer) -> None:
        group = self._groups.setdefault(group_name, _Group())
        group.members.append(member)
        self._rebalance(group)

    def _leave(self, group_name: str, member: MemoryConsumer) -> None:
        group = self._groups[group_name]
        if member in group.members:
            group.members.remove(member)
            self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Range assignment per topic over the members in join order (Kafka's RangeAssignor)."""
        group.generation += 1
        assignment: dict[int, set[TopicPartition]] = {m.member_id: set() for m in group.members}
        topics = sorted({t for m in group.members for t in m.topics})
        for topic in topics:
            subscribers = [m for m in group.members if topic in m.topics]
            n = len(self._logs.get(topic, []))
            if not subscribers or not n:
                continue
            per, extra = divmod(n, len(subscribers))
            start = 0
            for i, member in enumerate(subscribers):
                count = per + (1 if i < extra else 0)
                assignment[member.member_id].update((topic, p) for p in range(start, start + count))
                start += count
        group.assignment = {k: frozenset(v) for k, v in assignment.items()}
        self._cond.notify_all()


class MemoryProducer:
    """Queues records; ``flush`` appends them to the partitions (then they are visible)."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._queue: list[tuple[str, bytes | None, bytes, int | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        self._queue.append((topic, key, bytes(value), partition))

    def flush(self, timeout: float | None = None) -> None:
        with self._bus._cond:
            self._bus._check_available("flush")
            queue, self._queue = self._queue, []
            self._bus._append(queue)

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()


class MemoryConsumer:
    """A member of a group; positions reset to the group's commits on every rebalance."""

    def __init__(self, bus: MemoryBus, group: str, topics: Sequence[str]) -> None:
        self._bus = bus
        self.group = group
        self.topics = tuple(topics)
        self.member_id = next(bus._ids)
        self._generation = -1
        self._owned: frozenset[TopicPartition] = frozenset()
        self._position: dict[TopicPartition, int] = {}
        self._closed = False
        with bus._cond:
            for t in self.topics:
                bus._create(t, None)
            bus._join(group, self)

    def _sync(self) -> _Group:
        group = self._bus._groups[self.group]
        if group.generation != self._generation:
            self._generation = group.generation
            self._owned = group.assignment.get(self.member_id, frozenset())
            self._position = {tp: group.committed.get(tp, 0) for tp in self._owned}
        return group

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        if self._closed:
            raise RuntimeError("poll on a closed consumer")
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._bus._cond:
            while True:
                self._bus._check_available("poll")
                self._sync()
                out = self._take(max_records)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                self._bus._cond.wait(remaining)

    def _take(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for tp in sorted(self._owned):
            part = self._bus._logs[tp[0]][tp[1]]
            pos = self._position[tp]
            chunk = part[pos : pos + max_records - len(out)]
            out.extend(chunk)
            self._position[tp] = pos + len(chunk)
            if len(out) >= max_records:
                break
        return out

    def commit(self, done: Iterable[Message] | Mapping[TopicPartition, int]) -> bool:
        offsets = dict(done) if isinstance(done, Mapping) else next_offsets(done)
        with self._bus._cond:
            self._bus._check_available("commit")
            group = self._sync()
            if any(tp not in self._owned for tp in offsets):
                return False
            for tp, off in offsets.items():
                group.committed[tp] = off
            return True

    def assignment(self) -> frozenset[TopicPartition]:
        with self._bus._cond:
            self._sync()
            return self._owned

    def lag(self) -> dict[TopicPartition, int]:
        with self._bus._cond:
            self._sync()
            return {tp: len(self._bus._logs[tp[0]][tp[1]]) - pos for tp, pos in self._position.items()}

    def at_end(self) -> bool:
        return not any(self.lag().values())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._bus._cond:
                self._bus._leave(self.group, self)
