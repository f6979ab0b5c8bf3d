"""The aggregator stage: flow-batch messages in, event messages out (one engine per partition).

Theory of operation. Each flows partition this member owns gets its own
:class:`~aggregator.engine.Aggregator` and :class:`PartitionAligner`: all
records of one source (and all ICMP errors about one victim) are in one
partition (``bus/flows.py``), so an engine per partition sees everything it
needs, and a partition can move to another member with its state alone.

Per message: decode (a message that does not decode is poison: ``InputError``,
dead-lettered by the runner), hand the part to the partition's aligner, feed
what it releases -- whole (interval, sensor) batches in event-time order -- to
the engine, and return the events it completes as messages keyed by
``extra.event_id`` (so every revision of an incident lands in one events
partition, in order).

Checkpoints and commits. The engine's windows span many intervals, so what a
partition's messages did lives in memory until a checkpoint holds it.
:meth:`held_offsets` tells the runner, per partition, the first offset not in
the last checkpoint; the runner commits no further. The runner calls it only
after it flushed the outputs of every processed message (``Runner.step``), so
that is where a due checkpoint is written: state on disk never claims events
that are not on the broker. A partition that moves away is dropped
(:meth:`revoked`); its new owner loads the checkpoint and re-reads from the
commit, and the engine skips batches already in the state. Events emitted
after the last checkpoint are emitted again, identical (event time only), and
the reporter keeps one copy per (id, revision): at-least-once, no duplicate
incident.

Spoofing summaries are per ingress link and interval over the sources an
engine sees; with several flows partitions every engine summarises its share.
Their ids then include ``partition/partitions`` (``extra.partition``), so the
summaries of different partitions never collide under one id; the operator
adds them up (they are never reported to anyone). With one partition -- the
embedded ``run`` -- they are exactly ``darknet-iodef aggregate``'s.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aggregator.engine import Aggregator
from aggregator.known_scanners import KnownScanners
from aggregator.settings import AggregatorSettings
from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.bus.base import Message, TopicPartition
from darknet_iodef.events import encode_event
from darknet_iodef.flowtuple import FlowBatch, decode_batch
from darknet_iodef.metrics import AggregatorMetrics
from darknet_iodef.pipeline.aligner import PartitionAligner
from darknet_iodef.pipeline.checkpoints import CheckpointStore
from darknet_iodef.runner import Output, Stage

__all__ = ["AggregatorStage"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Partition:
    engine: Aggregator
    aligner: PartitionAligner
    #: next offset after the last message handed to this partition's aligner
    next_offset: int = 0
    #: first offset not in the last checkpoint (what may be committed)
    saved_offset: int | None = None
    generation: int = 0
    last_saved: float = float("-inf")
    dirty: bool = False
    counters: dict[str, int] = field(default_factory=dict)


class AggregatorStage(Stage):
    name = "aggregator"

    def __init__(
        self,
        settings: AggregatorSettings,
        *,
        events_topic: str,
        flows_partitions: int,
        checkpoints: CheckpointStore | None = None,
        checkpoint_interval_s: float = 30.0,
        sensor_lag_s: int = 600,
        sensors: frozenset[str] = frozenset(),
        metrics: AggregatorMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.darknet = DarkPrefixes.parse(settings.darknet, "darknet")
        self.known = KnownScanners(settings.allow_list or None)
        self.events_topic = events_topic
        self.flows_partitions = flows_partitions
        self.checkpoints = checkpoints
        self.checkpoint_interval_s = checkpoint_interval_s
        self.lag_ns = sensor_lag_s * 1_000_000_000
        self.sensors = sensors
        self.metrics = metrics
        self._clock = clock
        self.parts: dict[TopicPartition, _Partition] = {}
        #: state of partitions that moved away, kept in case they come back unchanged
        self.parked: dict[TopicPartition, _Partition] = {}
        #: this member's identity in the checkpoints it writes
        self.writer = uuid.uuid4().hex
        #: totals over every partition this member handled (for the run summary)
        self.totals: dict[str, int] = {"flows": 0, "batches": 0, "events": 0, "late_parts": 0}
        self.events_by_kind: dict[str, int] = {}
        self.sensor_stats: dict[str, int] = {}

    # -- partitions -----------------------------------------------------------------------------
    def _part(self, tp: TopicPartition) -> _Partition:
        part = self.parts.get(tp)
        if part is None:
            parked = self.parked.pop(tp, None)
            if parked is not None and (
                self.checkpoints is None
                or self.checkpoints.writer(tp[0], tp[1]) in (None, (self.writer, parked.generation))
            ):
                log.info(
                    "aggregator: %s[%d] is back, unchanged since it left: its state goes on", tp[0], tp[1]
                )
                self.parts[tp] = parked
                return parked
            engine = Aggregator(self.settings, self.darknet, self.known)
            part = _Partition(engine, PartitionAligner(self.lag_ns, self.sensors))
            if self.checkpoints is not None:
                restored = self.checkpoints.load(tp[0], tp[1], engine)
                if restored is not None:
                    part.aligner.restore(restored.aligner)
                    part.saved_offset = restored.offset
                    part.generation = restored.generation
                    log.info(
                        "aggregator: %s[%d] restored from its checkpoint at offset %d",
                        tp[0],
                        tp[1],
                        restored.offset,
                    )
            self.parts[tp] = part
        return part

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Set the state of moved partitions aside; it is used again only if they come back unchanged.

        The new owner restores the partition from its checkpoint. If the
        partition comes back to this member and nobody checkpointed it in the
        meantime (the usual case: a broker that lost its topics, a member that
        joined and left), the parked state -- newer than the checkpoint, with the
        parts of the open interval that such a broker no longer has -- goes on.
        """
        for tp in partitions:
            part = self.parts.pop(tp, None)
            if part is not None:
                self.parked[tp] = part
                log.info("aggregator: %s[%d] moved away; its state is set aside", tp[0], tp[1])

    # -- messages -------------------------------------------------------------------------------
    def process(self, message: Message) -> Iterable[Output]:
        tp = (message.topic, message.partition)
        batch = decode_batch(message.value, message.where)
        part = self._part(tp)
        part.next_offset = max(part.next_offset, message.offset + 1)
        for k, v in batch.stats.items():
            self.sensor_stats[k] = self.sensor_stats.get(k, 0) + int(v)
        before = part.aligner.late_parts
        released = part.aligner.add(message.offset, batch, message.value)
        self.totals["late_parts"] += part.aligner.late_parts - before
        return self._feed(tp, part, released)

    def finish(self) -> Iterable[Output]:
        out: list[Output] = []
        for tp in sorted(self.parts):
            part = self.parts[tp]
            out += self._feed(tp, part, part.aligner.drain())
            out += self._emit(tp, part.engine.flush())
            part.dirty = True
        return out

    def _feed(self, tp: TopicPartition, part: _Partition, batches: list[FlowBatch]) -> list[Output]:
        out: list[Output] = []
        for batch in batches:
            self.totals["batches"] += 1
            self.totals["flows"] += int(batch.flows.shape[0])
            if self.metrics:
                self.metrics.received_flows.inc(int(batch.flows.shape[0]))
            out += self._emit(tp, part.engine.process(batch))
            part.dirty = True
        if batches and self.metrics:
            self.metrics.tracked_sources.set(sum(p.engine.scan.src.size for p in self.parts.values()))
        return out

    def _emit(self, tp: TopicPartition, events: list[dict[str, Any]]) -> list[Output]:
        out = []
        for ev in events:
            kind = str(ev.get("classification.type", ""))
            if kind == "masquerade" and self.flows_partitions > 1:
                self._per_partition(ev, tp[1])
            eid = str(ev["extra.event_id"])
            out.append(Output(self.events_topic, eid.encode(), encode_event(ev)))
            label = _KIND.get(kind, kind)
            self.events_by_kind[label] = self.events_by_kind.get(label, 0) + 1
            self.totals["events"] += 1
            if self.metrics:
                self.metrics.events.labels(label).inc()
        return out

    def _per_partition(self, ev: dict[str, Any], partition: int) -> None:
        where = f"{partition}/{self.flows_partitions}"
        ev["extra.partition"] = where
        ev["extra.event_id"] = hashlib.sha256(f"{ev['extra.event_id']}|{where}".encode()).hexdigest()[:32]

    # -- commits --------------------------------------------------------------------------------
    def held_offsets(self) -> Mapping[TopicPartition, int]:
        """Per partition, the first offset not in its last checkpoint (writing one when due).

        Called by the runner after the producer flushed every output so far.
        Without a checkpoint store everything stays held until the end of the
        input (the embedded run, which commits once, at the end).
        """
        held: dict[TopicPartition, int] = {}
        now = self._clock()
        for tp, part in self.parts.items():
            if (
                self.checkpoints is not None
                and part.dirty
                and now - part.last_saved >= self.checkpoint_interval_s
            ):
                self._save(tp, part, now)
            held[tp] = part.saved_offset if part.saved_offset is not None else 0
        return held

    def _save(self, tp: TopicPartition, part: _Partition, now: float) -> None:
        assert self.checkpoints is not None
        first_held = part.aligner.first_held_offset()
        offset = part.next_offset if first_held is None else first_held
        if part.saved_offset is not None:
            offset = max(offset, part.saved_offset) if first_held is None else offset
        part.generation += 1
        self.checkpoints.save(
            tp[0], tp[1], part.engine, offset, part.aligner.state(), part.generation, writer=self.writer
        )
        part.saved_offset = offset
        part.last_saved = now
        part.dirty = False

    def checkpoint_all(self) -> None:
        """Save every partition now (on a clean shutdown, after the last flush)."""
        if self.checkpoints is None:
            return
        now = self._clock()
        for tp, part in self.parts.items():
            if part.dirty:
                self._save(tp, part, now)


_KIND = {"scanner": "scan", "ddos": "backscatter", "masquerade": "spoofing"}
