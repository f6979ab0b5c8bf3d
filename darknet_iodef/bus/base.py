"""The bus contract: what every stage sees, whichever broker is behind it.

Theory of operation (STYLE.md habit 9, after IntelMQ's pipeline and faust):
a stage reads :class:`Message` records from a consumer that belongs to a
*group*, and writes ``(topic, key, value)`` records through a producer. The
in-memory bus (:mod:`darknet_iodef.bus.memory`) and Kafka
(:mod:`darknet_iodef.bus.kafka`) implement the same three protocols below with
the same semantics, so a stage runs as a library call, in one process or across
machines without a code change:

* **Partitions by key.** A record without an explicit partition goes to
  ``murmur2(key) % partitions`` (:mod:`darknet_iodef.bus.partitioner`, Kafka's
  own default), so all records of one source address meet in one consumer.
* **Ordered within a partition**, offsets counting from 0 per partition.
* **Consumer groups.** The partitions of the subscribed topics are split among
  the live members of a group; a member that leaves (or dies) hands its
  partitions to the others.
* **At-least-once.** Offsets move only when a consumer commits them; a member
  that goes away without committing leaves its messages to the next owner.
  The runner (:mod:`darknet_iodef.runner`) commits only after the stage's
  output was flushed, so a crash duplicates, never loses.
* **Failures.** A broker that is away raises
  :class:`~darknet_iodef.errors.TransientError` from ``poll``/``flush``/
  ``commit``/``ensure_topics``; nothing buffered is dropped, the call may be
  repeated. A commit that lost its partitions to a rebalance returns False.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Bus",
    "Consumer",
    "Message",
    "Producer",
    "TopicPartition",
    "next_offsets",
]

#: (topic, partition): the unit of ordering, assignment and commit
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Message:
    """One record read from the bus: where it came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    #: broker timestamp in milliseconds since the epoch (-1 when unknown);
    #: informational only -- stages use event time from the payload
    timestamp_ms: int = -1

    @property
    def where(self) -> str:
        """``topic[partition]@offset``, the position used in error lines."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


def next_offsets(messages: Iterable[Message]) -> dict[TopicPartition, int]:
    """The offsets to commit after ``messages``: last offset + 1 per partition."""
    out: dict[TopicPartition, int] = {}
    for m in messages:
        tp = (m.topic, m.partition)
        if m.offset + 1 > out.get(tp, -1):
            out[tp] = m.offset + 1
    return out


@runtime_checkable
class Producer(Protocol):
    """Writes records; ``flush`` returns once the broker holds all of them."""

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue one record (partition from the key when not given)."""

    def flush(self, timeout: float | None = None) -> None:
        """Hand every queued record to the broker; TransientError keeps them queued."""

    def pending(self) -> int:
        """Records queued and not yet acknowledged by the broker."""

    def close(self) -> None:
        """Release the connection (after a flush; unflushed records are dropped)."""


@runtime_checkable
class Consumer(Protocol):
    """A member of a consumer group, subscribed to some topics."""

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_records`` messages, waiting at most ``timeout`` seconds for one."""

    def commit(self, done: Iterable[Message] | Mapping[TopicPartition, int]) -> bool:
        """Mark messages (or explicit next offsets) as done; False if the partitions moved."""

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now."""

    def lag(self) -> dict[TopicPartition, int]:
        """Messages not yet read, per owned partition."""

    def at_end(self) -> bool:
        """True when every owned partition has been read to its end."""

    def close(self) -> None:
        """Leave the group without committing (the next owner re-reads)."""


@runtime_checkable
class Bus(Protocol):
    """A broker: topic admin plus factories for producers and group consumers."""

    def ensure_topics(self, names: Sequence[str], partitions: int | None = None) -> None:
        """Create the topics that are absent (existing ones are left as they are)."""

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (creating it when absent)."""

    def producer(self) -> Producer: ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    def close(self) -> None: ...
