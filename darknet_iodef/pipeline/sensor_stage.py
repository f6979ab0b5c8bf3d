"""The sensor stage: captures (or a live interface) -> flow builder -> flow messages per partition.

The sensor only produces, so it is not a consuming :class:`~darknet_iodef.runner.Stage`:
:class:`SensorStage` turns each closed interval's :class:`FlowBatch` into
:class:`~darknet_iodef.runner.Output` records -- one or more per partition of
the flows topic, by source address (``bus/flows.py``: the quoted destination
for ICMP errors), the empty ones being the event-time watermark of every
partition -- and the drivers below hand them to a
:class:`~darknet_iodef.runner.Publisher`, which waits out a broker that is
away with the same backoff as every stage and drops nothing it was given.
The same code feeds the in-memory bus of ``darknet-iodef run`` and Kafka
(``darknet-iodef sensor --kafka``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.bus.base import Bus
from darknet_iodef.bus.flows import DEFAULT_MAX_BYTES, partition_batch
from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.errors import ConfigError, TransientError
from darknet_iodef.flowtuple import FlowBatch, encode_batch
from darknet_iodef.metrics import SensorMetrics
from darknet_iodef.runner import Backoff, Output, Publisher
from sensor.fields import Status
from sensor.flows import FlowBuilder
from sensor.settings import SensorSettings

__all__ = ["SensorStage", "SensorTotals", "publish_captures", "publish_live", "publisher_for"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SensorTotals:
    batches: int = 0
    flows: int = 0
    samples: int = 0
    messages: int = 0
    capture_records: int = 0
    builder: dict[str, int] = field(default_factory=dict)


class SensorStage:
    """Closed intervals -> flow messages, split per partition of the flows topic."""

    name = "sensor"

    def __init__(
        self,
        topic: str,
        partitions: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        metrics: SensorMetrics | None = None,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.totals = SensorTotals()

    def outputs(self, batch: FlowBatch) -> list[Output]:
        t = self.totals
        t.batches += 1
        t.flows += int(batch.flows.shape[0])
        t.samples += int(batch.samples.shape[0])
        out = [
            Output(self.topic, None, encode_batch(part), p)
            for p, part in partition_batch(batch, self.partitions, self.max_bytes)
        ]
        t.messages += len(out)
        if self.metrics:
            self.metrics.produced_flows.inc(int(batch.flows.shape[0]))
            self.metrics.produced_batches.inc()
        return out


def publisher_for(
    bus: Bus, settings: BusSettings, stop: threading.Event | None = None, metrics: Any = None
) -> Publisher:
    """A publisher on ``bus`` after the topics exist (a broker not there yet is waited for)."""
    stop = stop or threading.Event()
    backoff = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s)
    while not stop.is_set():
        try:
            bus.ensure_topics(list(settings.topic_partitions()))
            break
        except TransientError as exc:
            delay = backoff.next()
            log.warning("sensor: broker not ready (%s); retry %d in %.1f s", exc, backoff.attempt, delay)
            stop.wait(delay)
    backoff.reset()
    return Publisher(bus.producer(), name="sensor", metrics=metrics, backoff=backoff, stop=stop)


def _count(metrics: SensorMetrics, packets: npt.NDArray[np.void], seconds: float) -> None:
    """The sensor's packet metrics for one block (as the live agent counts them)."""
    metrics.received_packets.inc(int(packets.shape[0]))
    metrics.received_bytes.inc(int(packets["wire_len"].sum(dtype=np.int64)))
    counts = np.bincount(packets["status"], minlength=len(Status))
    for status in Status:
        if status is not Status.OK and status < counts.shape[0] and counts[status]:
            metrics.dropped_packets.labels(reason=status.name.lower()).inc(int(counts[status]))
    metrics.processing_duration.observe(seconds)


def _builder(settings: SensorSettings) -> tuple[DarkPrefixes, str]:
    if not settings.darknet:
        raise ConfigError(
            "--darknet", "no dark prefixes given (flag, [sensor] darknet or DARKNET_IODEF_SENSOR_DARKNET)"
        )
    return DarkPrefixes.parse(settings.darknet, setting="--darknet"), settings.name or socket.gethostname()


def publish_captures(
    captures: Sequence[str],
    settings: SensorSettings,
    stage: SensorStage,
    publish: Callable[[list[Output]], None],
    *,
    progress_enabled: bool | None = None,
    on_batch: Callable[[FlowBatch], None] | None = None,
) -> SensorTotals:
    """Read ``captures`` as one stream (as ``darknet-iodef sensor`` does) and publish every interval."""
    from sensor.capture import CaptureStats, capture_sizes, iter_packet_batches
    from sensor.progress import Progress

    darknet, name = _builder(settings)
    sizes = capture_sizes(captures)
    builder = FlowBuilder(darknet, settings, name)
    cstats = CaptureStats()
    progress = Progress(sum(sizes), label="sensor", enabled=progress_enabled)

    def emit(batches: list[FlowBatch]) -> None:
        for fb in batches:
            if on_batch is not None:
                on_batch(fb)
            publish(stage.outputs(fb))

    try:
        for path in captures:
            for packets in iter_packet_batches(path, stats=cstats, progress=progress):
                started = time.perf_counter()
                batches = builder.push(packets)
                if stage.metrics:
                    _count(stage.metrics, packets, time.perf_counter() - started)
                emit(batches)
        emit(builder.flush())
    finally:
        progress.close()
    for line in cstats.warnings:
        log.warning("%s", line)
    stage.totals.capture_records = cstats.records
    stage.totals.builder = dict(builder.stats)
    return stage.totals


def publish_live(
    interface: str,
    settings: SensorSettings,
    live: Any,
    stage: SensorStage,
    publish: Callable[[list[Output]], None],
    *,
    stop: threading.Event | None = None,
    on_batch: Callable[[FlowBatch], None] | None = None,
    reload_callbacks: Sequence[Callable[[], None]] = (),
) -> Any:
    """Capture on ``interface`` until stopped (SIGTERM/SIGINT) and publish every closed interval.

    SIGHUP runs ``reload_callbacks`` in the capture loop, between batches.
    """
    from sensor.live.agent import run_live

    darknet, name = _builder(settings)

    def sink(batch: FlowBatch) -> None:
        if on_batch is not None:
            on_batch(batch)
        publish(stage.outputs(batch))

    summary = run_live(
        interface,
        darknet,
        settings,
        live,
        sink,
        sensor_name=name,
        stop=stop,
        metrics=stage.metrics,
        reload_callbacks=reload_callbacks,
    )
    stage.totals.capture_records = int(summary.frames)
    stage.totals.builder = {k: int(v) for k, v in summary.flow_stats.items()}
    return summary
