"""Prometheus metrics of the live capture agent (kernel counters, archive).

Theory of operation: the shared sensor metrics (packets and bytes read, drops
by reason, flows and batches produced, processing time) are declared in
:mod:`darknet_iodef.metrics` and used as they are; what only a live capture
has -- the kernel's socket counters and the evidence archive -- is declared
here once, in the same style (built once per registry, the process-wide set
from :func:`live_metrics`), so it can move into that module unchanged.

The kernel counters are cumulative since the agent started (PACKET_STATISTICS
resets on read; the ring adds them up). ``interface`` is the only label: a
small, operator-chosen set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

__all__ = ["LiveMetrics", "live_metrics"]


@dataclass(frozen=True, slots=True)
class LiveMetrics:
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


@functools.cache
def live_metrics() -> LiveMetrics:
    return LiveMetrics.create()
