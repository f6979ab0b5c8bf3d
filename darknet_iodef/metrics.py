"""Prometheus metrics of every component, declared in one place.

Theory of operation (STYLE.md habit 12 and "Names"): every metric is named
``darknet_<component>_<what>_<unit>[_total]`` in base units (seconds, bytes;
packets, flows, events, reports and messages count things). Labels take values
from small closed sets only (a drop reason from ``sensor.fields.Status``, an
event kind, a topic name); never an IP address, ASN or port, which would make
one time series per attacker.

Components use the declarations below and never create metrics of their own,
so this file is the list an operator reads (docs/operations.md copies it). Each
group is built once per registry: the ``*_metrics()`` functions give the
process-wide instances on prometheus-client's default registry; tests build
their own with a fresh :class:`CollectorRegistry`. ``serve(listen)`` starts the
HTTP endpoint (off unless ``[metrics] listen`` or ``--metrics`` says where).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = [
    "AggregatorMetrics",
    "LiveMetrics",
    "MetricsSettings",
    "ReceiverMetrics",
    "ReporterMetrics",
    "SensorMetrics",
    "StageMetrics",
    "aggregator_metrics",
    "live_metrics",
    "parse_listen",
    "receiver_metrics",
    "reporter_metrics",
    "sensor_metrics",
    "serve",
    "stage_metrics",
]

#: processing durations from 100 µs (one small batch) to 1 min (a stuck peer)
DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: str = setting("", "HOST:PORT of the Prometheus endpoint, e.g. 127.0.0.1:9464; empty = off")

    def __post_init__(self) -> None:
        if self.listen:
            parse_listen(self.listen, "[metrics] listen")


def parse_listen(listen: str, where: str = "--metrics") -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(where, f"{listen!r} is not HOST:PORT")
    return host, int(port)


def serve(listen: str, registry: CollectorRegistry = REGISTRY) -> Any:
    """Start the /metrics HTTP endpoint on ``listen`` (HOST:PORT); returns the server."""
    host, port = parse_listen(listen)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError("[metrics] listen", f"cannot listen on {listen}: {exc.strerror}") from None
    return server


@dataclass(frozen=True, slots=True)
class SensorMetrics:
    received_packets: Counter
    received_bytes: Counter
    dropped_packets: Counter
    produced_flows: Counter
    produced_batches: Counter
    processing_duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> SensorMetrics:
        r = registry
        return cls(
            Counter("darknet_sensor_received_packets_total", "Packets read from captures or the interface",
                    registry=r),
            Counter("darknet_sensor_received_bytes_total", "Bytes on the wire of the packets read",
                    registry=r),
            Counter("darknet_sensor_dropped_packets_total",
                    "Packets not folded into flows, by reason (sensor.fields.Status names)",
                    ["reason"], registry=r),
            Counter("darknet_sensor_produced_flows_total", "Flow records produced", registry=r),
            Counter("darknet_sensor_produced_batches_total", "Flow batches handed to the bus or written",
                    registry=r),
            Histogram("darknet_sensor_processing_duration_seconds",
                      "Wall time to parse and fold one block of packets", buckets=DURATION_BUCKETS,
                      registry=r),
        )


@dataclass(frozen=True, slots=True)
class LiveMetrics:
    """The live sensor's own: kernel socket counters (PACKET_STATISTICS, cumulative) and the archive."""

    kernel_packets: Counter
    kernel_drops: Counter
    kernel_freezes: Counter
    archive_bytes: Counter
    archive_files: Counter
    ring_bytes: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> LiveMetrics:
        r = registry
        return cls(
            Counter("darknet_sensor_kernel_packets_total",
                    "Packets the kernel passed to the capture socket, drops included (PACKET_STATISTICS)",
                    ["interface"], registry=r),
            Counter("darknet_sensor_kernel_drops_total",
                    "Packets the kernel dropped because the capture ring was full", ["interface"],
                    registry=r),
            Counter("darknet_sensor_kernel_freezes_total",
                    "Times the capture ring was full and the kernel froze its queue", ["interface"],
                    registry=r),
            Counter("darknet_sensor_archive_bytes_total", "Bytes written to the pcap evidence archive",
                    ["interface"], registry=r),
            Counter("darknet_sensor_archive_files_total", "Pcap archive files started", ["interface"],
                    registry=r),
            Gauge("darknet_sensor_ring_bytes", "Size of the capture ring (0 under the libpcap fallback)",
                  ["interface"], registry=r),
        )


@dataclass(frozen=True, slots=True)
class AggregatorMetrics:
    received_flows: Counter
    events: Counter
    tracked_sources: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> AggregatorMetrics:
        r = registry
        return cls(
            Counter("darknet_aggregator_received_flows_total", "Flow records read", registry=r),
            Counter("darknet_aggregator_events_total",
                    "Events emitted, by kind (scan, backscatter, spoofed, ...)", ["kind"], registry=r),
            Gauge("darknet_aggregator_tracked_sources", "Sources with open windows in memory", registry=r),
        )


@dataclass(frozen=True, slots=True)
class ReporterMetrics:
    written_reports: Counter
    sent_reports: Counter
    failed_reports: Counter
    queued_reports: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> ReporterMetrics:
        r = registry
        return cls(
            Counter("darknet_reporter_written_reports_total", "IODEF documents written to files, by format",
                    ["format"], registry=r),
            Counter("darknet_reporter_sent_reports_total", "Reports delivered and acknowledged, by transport",
                    ["transport"], registry=r),
            Counter("darknet_reporter_failed_reports_total",
                    "Delivery attempts that failed, by transport and reason class", ["transport", "reason"],
                    registry=r),
            Gauge("darknet_reporter_queued_reports", "Reports waiting for delivery", registry=r),
        )


@dataclass(frozen=True, slots=True)
class ReceiverMetrics:
    accepted_reports: Counter
    refused_reports: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> ReceiverMetrics:
        r = registry
        return cls(
            Counter("darknet_receiver_accepted_reports_total", "RID reports accepted", registry=r),
            Counter("darknet_receiver_refused_reports_total", "RID requests refused, by reason class",
                    ["reason"], registry=r),
        )


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """What the runner measures for any stage that reads the bus (one set per component)."""

    consumed_messages: Counter
    produced_messages: Counter
    dead_letter_messages: Counter
    retries: Counter
    refused_commits: Counter
    consumer_lag: Gauge
    processing_duration: Histogram

    @classmethod
    def create(cls, component: str, registry: CollectorRegistry = REGISTRY) -> StageMetrics:
        if not component.isidentifier():
            raise ValueError(f"component name {component!r} is not usable in a metric name")
        p, r = f"darknet_{component}", registry
        return cls(
            Counter(f"{p}_consumed_messages_total", "Bus messages handed to the stage", ["topic"],
                    registry=r),
            Counter(f"{p}_produced_messages_total", "Bus messages the stage produced", ["topic"], registry=r),
            Counter(f"{p}_dead_letter_messages_total",
                    "Messages sent to the dead-letter topic, by error class", ["error"], registry=r),
            Counter(f"{p}_retries_total", "Retries after a transient failure, by operation",
                    ["operation"], registry=r),
            Counter(f"{p}_refused_commits_total",
                    "Commits refused because the group rebalanced (messages will be re-read)", registry=r),
            Gauge(f"{p}_consumer_lag_messages", "Messages not yet read, per owned partition",
                  ["topic", "partition"], registry=r),
            Histogram(f"{p}_processing_duration_seconds", "Wall time of the stage on one message",
                      buckets=DURATION_BUCKETS, registry=r),
        )


@functools.cache
def sensor_metrics() -> SensorMetrics:
    return SensorMetrics.create()


@functools.cache
def live_metrics() -> LiveMetrics:
    return LiveMetrics.create()


@functools.cache
def aggregator_metrics() -> AggregatorMetrics:
    return AggregatorMetrics.create()


@functools.cache
def reporter_metrics() -> ReporterMetrics:
    return ReporterMetrics.create()


@functools.cache
def receiver_metrics() -> ReceiverMetrics:
    return ReceiverMetrics.create()


@functools.cache
def stage_metrics(component: str) -> StageMetrics:
    return StageMetrics.create(component)
