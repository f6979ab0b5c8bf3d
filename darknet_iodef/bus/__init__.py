"""The message bus between sensor, aggregator and reporter: one interface, two brokers.

``open_bus(settings)`` gives the in-memory bus when ``[bus] kafka`` is empty
(the whole pipeline in one process) and Kafka otherwise; stages only see the
:class:`Bus`, :class:`Producer` and :class:`Consumer` protocols of
:mod:`darknet_iodef.bus.base`.
"""

from __future__ import annotations

from darknet_iodef.bus.base import Bus, Consumer, Message, Producer, TopicPartition, next_offsets
from darknet_iodef.bus.deadletter import DeadLetter, decode_dead_letter, encode_dead_letter
from darknet_iodef.bus.memory import MemoryBus
from darknet_iodef.bus.partitioner import murmur2, partition_for, partitions_of_addresses
from darknet_iodef.bus.settings import BusSettings

__all__ = [
    "Bus",
    "BusSettings",
    "Consumer",
    "DeadLetter",
    "MemoryBus",
    "Message",
    "Producer",
    "TopicPartition",
    "decode_dead_letter",
    "encode_dead_letter",
    "murmur2",
    "next_offsets",
    "open_bus",
    "partition_for",
    "partitions_of_addresses",
]


def open_bus(settings: BusSettings, client_id: str | None = None) -> Bus:
    """The bus the settings name: Kafka when ``kafka`` is set, else a new in-memory bus."""
    if settings.servers:
        from darknet_iodef.bus.kafka import KafkaBus

        return KafkaBus(settings, client_id)
    return MemoryBus(settings.topic_partitions())
