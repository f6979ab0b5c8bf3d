"""Parts of flow batches from one partition -> whole batches in event-time order (sans-I/O).

Theory of operation. On the bus, each sensor batch (one interval of one
sensor) arrives cut in parts: one or more per partition (``bus/flows.py``),
at least an empty one, which is the sensor's event-time watermark for that
partition. Several sensors write into the same partition, in whatever order
their messages reach the broker. The aggregator's engine, however, wants what
``darknet-iodef aggregate`` gives it: one batch per (interval, sensor), in
interval order -- otherwise a sensor that is a little behind would have its
interval processed after the engine already closed it.

So per partition this module keeps the parts of intervals not yet complete
and releases an interval once every sensor it knows has moved past it (has
sent a part of a later interval). The released batches come out sorted by
(interval start, sensor name), the parts of one (interval, sensor) joined in
offset order -- which restores the sensor's own batch exactly (parts keep row
order) and makes the result independent of arrival order. A sensor that falls
more than ``lag_ns`` of event time behind the newest one is not waited for
(it may have stopped); its later parts are handed over as they come and
counted as late. ``drain`` releases everything at the end of a finite input.

Sensors are learnt from their parts; a sensor that has not sent anything yet
cannot be waited for -- unless it is named in ``expected`` (``[pipeline]
sensors``): then the partition waits for it, too, until the newest interval
is ``lag_ns`` past the first one seen. Naming the sensors makes the result
independent of which sensor's messages reach the broker first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from darknet_iodef.flowtuple import FlowBatch

__all__ = ["PartitionAligner", "join_parts"]


def join_parts(parts: list[FlowBatch]) -> FlowBatch:
    """One batch from the parts of one (interval, sensor), in the order given."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    stats: dict[str, int] = {}
    for p in parts:
        for k, v in p.stats.items():
            stats[k] = stats.get(k, 0) + int(v)
    return FlowBatch(
        first.interval_start_ns,
        first.interval_ns,
        first.sensor,
        np.concatenate([p.flows for p in parts]),
        np.concatenate([p.samples for p in parts]),
        stats,
    )


@dataclass(slots=True)
class PartitionAligner:
    """Hold parts until their interval is complete on this partition; release in canonical order."""

    lag_ns: int
    #: sensors to wait for even before their first part (``[pipeline] sensors``)
    expected: frozenset[str] = frozenset()
    #: newest interval start seen per sensor
    sensors: dict[str, int] = field(default_factory=dict)
    #: intervals starting before this were released
    released_until: int | None = None
    late_parts: int = 0
    #: the first interval start seen on this partition
    first_start: int | None = None
    duplicate_parts: int = 0
    _pending: dict[tuple[int, str], list[tuple[int, FlowBatch]]] = field(default_factory=dict)
    _digests: dict[tuple[int, str], set[bytes]] = field(default_factory=dict)

    def add(self, offset: int, batch: FlowBatch, raw: bytes | None = None) -> list[FlowBatch]:
        """Take one part; returns what it completes (a late part is returned at once).

        ``raw`` is the part's message: a part read twice (a partition read again
        from an older commit, or from the start of a topic a broker re-created)
        is held once. Offsets cannot tell, since a re-created topic counts anew.
        """
        start = batch.interval_start_ns
        if self.first_start is None or start < self.first_start:
            self.first_start = start
        if start > self.sensors.get(batch.sensor, -1):
            self.sensors[batch.sensor] = start
        if self.released_until is not None and start < self.released_until:
            self.late_parts += 1
            return [batch]
        key = (start, batch.sensor)
        if raw is not None:
            digest = hashlib.blake2b(raw, digest_size=16).digest()
            seen = self._digests.setdefault(key, set())
            if digest in seen:
                self.duplicate_parts += 1
                return self.ready()
            seen.add(digest)
        self._pending.setdefault(key, []).append((offset, batch))
        return self.ready()

    def frontier(self) -> int | None:
        """Intervals starting before this are complete: every live sensor has passed them."""
        if not self.sensors:
            return None
        newest = max(self.sensors.values())
        missing = self.expected - self.sensors.keys()
        if missing and self.first_start is not None and newest - self.first_start <= self.lag_ns:
            return None  # a named sensor has not spoken yet, and it is not late yet
        return min(wm for wm in self.sensors.values() if wm >= newest - self.lag_ns)

    def ready(self) -> list[FlowBatch]:
        edge = self.frontier()
        if edge is None:
            return []
        return self._release(edge)

    def drain(self) -> list[FlowBatch]:
        """Everything held, in order (end of a finite input)."""
        if not self._pending:
            return []
        return self._release(max(s for s, _ in self._pending) + 1)

    def _release(self, edge: int) -> list[FlowBatch]:
        due = sorted(k for k in self._pending if k[0] < edge)
        out = []
        for key in due:
            parts = sorted(self._pending.pop(key), key=lambda p: p[0])
            self._digests.pop(key, None)
            out.append(join_parts([b for _, b in parts]))
        self.released_until = edge if self.released_until is None else max(self.released_until, edge)
        return out

    def first_held_offset(self) -> int | None:
        """The smallest offset whose part is still held (None when nothing is)."""
        offsets = [o for parts in self._pending.values() for o, _ in parts]
        return min(offsets) if offsets else None

    def state(self) -> dict[str, Any]:
        return {
            "sensors": dict(self.sensors),
            "released_until": self.released_until,
            "late_parts": self.late_parts,
        }

    def restore(self, meta: Mapping[str, Any]) -> None:
        self.sensors = {str(k): int(v) for k, v in dict(meta.get("sensors", {})).items()}
        ru = meta.get("released_until")
        self.released_until = None if ru is None else int(ru)
        self.late_parts = int(meta.get("late_parts", 0))
        fs = meta.get("first_start")
        self.first_start = None if fs is None else int(fs)
        self._pending.clear()
        self._digests.clear()
