"""The live capture agent: interface -> ring blocks -> decoder -> flow builder -> sink.

Theory of operation: one loop, one thread. It waits for the kernel to hand
over ring blocks, indexes them (``frames.walk_blocks``), decodes all their
frames in one ``decode_frames`` call, writes them to the evidence archive if
asked, gives the blocks back to the kernel, and only then folds the packets
into flows -- so the ring is held for as short a time as possible. Closed
intervals go to ``sink`` (the ``sensor`` command writes them to a flow file
or the bus).

Time: packets carry the kernel's receive timestamps (event time) and the
flow builder closes intervals from those. The wall clock is used for one
thing only: when the link is quiet, event time is moved to "now minus the
block timeout minus one second" (``FlowBuilder.advance``), a lower bound on
the timestamp of any packet not yet handed over (the kernel stamps with the
same real-time clock and retires a block at most ``block_timeout_ms`` after
its first packet), so an interval still closes on a dark, silent link.

Signals: SIGTERM and SIGINT stop the loop; the agent then takes the blocks
the kernel retires within one more block timeout, flushes the open interval
to ``sink`` and closes the archive. SIGHUP runs ``reload_callbacks`` (the
allow-list and contacts belong to other components; they register here) from
the loop, never inside the signal handler.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.errors import ConfigError
from darknet_iodef.flowtuple import FlowBatch
from darknet_iodef.metrics import LiveMetrics, SensorMetrics, live_metrics, sensor_metrics
from sensor.decode import decode_frames
from sensor.fields import Status
from sensor.flows import FlowBuilder
from sensor.live.archive import ArchiveStats, RotatingPcapWriter
from sensor.live.frames import FrameBatch
from sensor.live.ring import KernelStats, PacketRing, RingUnavailable
from sensor.live.settings import LiveSettings
from sensor.settings import SensorSettings

__all__ = ["Capture", "LiveSummary", "open_capture", "run_live"]

log = logging.getLogger(__name__)

#: how far behind "now" the idle tick keeps event time, beyond the block timeout
_IDLE_MARGIN_NS = 1_000_000_000


class Capture(Protocol):
    """What the agent needs of a capture (the ring and the libpcap fallback)."""

    interface: str
    linktype: int

    def wait(self, timeout_s: float) -> bool: ...
    def take(self, max_blocks: int) -> FrameBatch: ...
    def release(self) -> None: ...
    def stats(self) -> KernelStats: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveSummary:
    """What one run of the agent did (printed by ``sensor`` at exit)."""

    interface: str
    method: str  # "ring" or "libpcap"
    linktype: int
    frames: int  # frames handed to the decoder
    wire_bytes: int
    batches: int  # flow batches handed to the sink
    flows: int
    kernel_packets: int  # PACKET_STATISTICS: seen by the socket, drops included
    kernel_drops: int
    kernel_freezes: int
    archive_files: int
    archive_bytes: int
    flow_stats: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flow_stats"] = dict(self.flow_stats)
        return out


def open_capture(interface: str, live: LiveSettings) -> tuple[Capture, str]:
    """The ring if it can be used (or is forced), else libpcap; and which one."""
    if live.method in ("auto", "ring"):
        try:
            ring = PacketRing(
                interface,
                live.block_size,
                live.block_count,
                live.block_timeout_ms,
                bpf=live.bpf,
                snaplen=live.snaplen,
                promiscuous=live.promiscuous,
                ignore_outgoing=live.ignore_outgoing,
                fanout_group=live.fanout_group,
                fanout_mode=live.fanout_mode,
            )
            return ring, "ring"
        except RingUnavailable as exc:
            if live.method == "ring":
                raise ConfigError("[live] method", f"the AF_PACKET ring cannot be used: {exc}") from None
            log.warning("The AF_PACKET ring cannot be used (%s); falling back to libpcap, which is "
                        "several times slower.", exc)
        except PermissionError:
            raise ConfigError("interface", f"capturing on {interface!r} needs CAP_NET_RAW "
                                           "(see docs/live-capture.md)") from None
    else:
        log.warning("Capturing with libpcap as configured ([live] method = libpcap); the AF_PACKET ring "
                    "is several times faster.")
    from sensor.live.fallback import LibpcapCapture

    return LibpcapCapture(interface, live.bpf, live.snaplen, live.promiscuous, live.block_timeout_ms,
                          live.block_size * live.block_count), "libpcap"


class _Loop:
    """The state of one run; methods are the steps of the loop."""

    def __init__(self, cap: Capture, method: str, builder: FlowBuilder, live: LiveSettings,
                 sink: Callable[[FlowBatch], None], metrics: SensorMetrics, lmetrics: LiveMetrics,
                 iface_index: int) -> None:
        self.cap = cap
        self.method = method
        self.builder = builder
        self.live = live
        self.sink = sink
        self.metrics = metrics
        self.lm = lmetrics
        self.iface_index = iface_index
        self.frames = 0
        self.wire_bytes = 0
        self.batches = 0
        self.flows = 0
        self.kstats = KernelStats(0, 0, 0)
        self.archive: RotatingPcapWriter | None = None
        if live.archive_dir:
            self.archive = RotatingPcapWriter(
                Path(live.archive_dir), cap.linktype, live.archive_rotate_bytes, live.archive_rotate_seconds,
                live.archive_keep, live.snaplen, prefix=f"darknet-{cap.interface}",
            )
        self._archive_seen = (0, 0)
        self.archive_stats: ArchiveStats | None = None
        self._label = {"interface": cap.interface}

    def emit(self, batches: Sequence[FlowBatch]) -> None:
        for b in batches:
            self.sink(b)
            self.batches += 1
            self.flows += int(b.flows.shape[0])
            self.metrics.produced_batches.inc()
            self.metrics.produced_flows.inc(int(b.flows.shape[0]))

    def step(self, timeout_s: float) -> int:
        """Wait for frames, process what is ready; return how many frames."""
        self.cap.wait(timeout_s)
        started = time.perf_counter()
        try:
            fb = self.cap.take(self.live.max_blocks_per_batch)
            n = len(fb)
            if n == 0:
                return 0
            stripped = fb.vlan_tpid != 0
            wire = fb.wire_lens + np.where(stripped, 4, 0).astype(np.uint32)  # the tag was on the wire
            packets = decode_frames(fb.buf, fb.offsets, fb.cap_lens, wire, fb.ts_ns, fb.linktype,
                                    self.iface_index)
            if stripped.any():
                # the kernel took the outermost tag off the frame: put its ID back
                packets["vlan"][stripped] = fb.vlan_tci[stripped] & 0x0FFF
            if self.archive is not None:
                self._archive(fb)
            wire_total = int(wire.sum(dtype=np.int64))
            del fb  # nothing may point into the ring once the blocks go back
        finally:
            self.cap.release()
        self.frames += n
        self.wire_bytes += wire_total
        self.metrics.received_packets.inc(n)
        self.metrics.received_bytes.inc(wire_total)
        counts = np.bincount(packets["status"], minlength=len(Status))
        for status in Status:
            if status is not Status.OK and status < counts.shape[0] and counts[status]:
                self.metrics.dropped_packets.labels(reason=status.name.lower()).inc(int(counts[status]))
        self.emit(self.builder.push(packets))
        self.metrics.processing_duration.observe(time.perf_counter() - started)
        return n

    def _archive(self, fb: FrameBatch) -> None:
        """Write to the evidence archive; if the disk fails, go on capturing without it.

        The archive is optional evidence; the flow summaries are the product,
        so a full or broken disk stops the archive (loudly), not the sensor.
        """
        assert self.archive is not None
        try:
            self.archive.write(fb)
        except OSError as exc:
            log.error("The pcap archive in %s failed (%s); capturing on without it.",
                      self.archive.directory, exc.strerror or exc)
            with contextlib.suppress(OSError):
                self.archive.close()
            self.archive_stats = self.archive.stats()
            self.archive = None

    def idle_tick(self) -> None:
        mark = self.builder.watermark_ns
        now = time.time_ns() - self.live.block_timeout_ms * 1_000_000 - _IDLE_MARGIN_NS
        if mark is not None and now > mark:
            self.emit(self.builder.advance(now))

    def read_stats(self) -> None:
        before = self.kstats
        self.kstats = self.cap.stats()
        d_pk = self.kstats.packets - before.packets
        d_drop = self.kstats.drops - before.drops
        d_freeze = self.kstats.freeze_q_cnt - before.freeze_q_cnt
        self.lm.kernel_packets.labels(**self._label).inc(max(d_pk, 0))
        self.lm.kernel_drops.labels(**self._label).inc(max(d_drop, 0))
        self.lm.kernel_freezes.labels(**self._label).inc(max(d_freeze, 0))
        if d_drop > 0:
            log.warning("The kernel dropped %d of %d packets on %s since the last check (ring full): "
                        "enlarge the ring, narrow the filter or add sensors.", d_drop, d_pk,
                        self.cap.interface)
        if self.archive is not None or self.archive_stats is not None:
            st = self.archive.stats() if self.archive is not None else self.archive_stats
            assert st is not None
            files, size = self._archive_seen
            self.lm.archive_files.labels(**self._label).inc(st.files - files)
            self.lm.archive_bytes.labels(**self._label).inc(st.bytes - size)
            self._archive_seen = (st.files, st.bytes)


def run_live(
    interface: str,
    darknet: DarkPrefixes,
    settings: SensorSettings,
    live: LiveSettings,
    sink: Callable[[FlowBatch], None],
    *,
    sensor_name: str | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    reload_callbacks: Sequence[Callable[[], None]] = (),
    handle_signals: bool = True,
    metrics: SensorMetrics | None = None,
    lmetrics: LiveMetrics | None = None,
) -> LiveSummary:
    """Capture on ``interface`` until ``stop`` is set (or SIGTERM/SIGINT); return a summary.

    ``sink`` receives every closed interval's :class:`FlowBatch`, the last
    one(s) from the final flush. ``ready`` is set once the capture is open
    (tests start sending then). Signal handlers are installed only when
    ``handle_signals`` and this is the main thread; they are restored on
    return.
    """
    stop = stop if stop is not None else threading.Event()
    reload_wanted = threading.Event()
    name = sensor_name or settings.name or socket.gethostname()
    cap, method = open_capture(interface, live)
    try:
        iface_index = socket.if_nametoindex(interface) & 0xFFFF
    except OSError:
        iface_index = 0
    loop = _Loop(cap, method, FlowBuilder(darknet, settings, name), live, sink,
                 metrics or sensor_metrics(), lmetrics or live_metrics(), iface_index)
    ring_bytes = live.block_size * live.block_count if method == "ring" else 0
    loop.lm.ring_bytes.labels(interface=interface).set(ring_bytes)
    previous: dict[signal.Signals, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        def _stop(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        def _reload(signum: int, _frame: FrameType | None) -> None:
            reload_wanted.set()

        for sig, handler in ((signal.SIGTERM, _stop), (signal.SIGINT, _stop), (signal.SIGHUP, _reload)):
            previous[sig] = signal.signal(sig, handler)
    # logged once the handlers are in place: whoever waits for this line may signal at once
    log.info("Capturing on %s with %s (link type %d%s%s); dark prefixes %s.", interface,
             "the TPACKET_V3 ring" if method == "ring" else "libpcap", cap.linktype,
             f", ring {live.block_count} x {live.block_size} bytes" if ring_bytes else "",
             f", filter {live.bpf!r}" if live.bpf else "", darknet)
    timeout_s = min(live.block_timeout_ms / 1000.0, 0.25)
    next_stats = time.monotonic() + live.stats_interval_s
    try:
        if ready is not None:
            ready.set()
        while not stop.is_set():
            if reload_wanted.is_set():
                reload_wanted.clear()
                _run_reload(reload_callbacks)
            if loop.step(timeout_s) == 0:
                loop.idle_tick()
            if time.monotonic() >= next_stats:
                loop.read_stats()
                next_stats = time.monotonic() + live.stats_interval_s
        # the kernel retires a partly filled block within one block timeout: take it too
        log.info("Stopping capture on %s: taking the last blocks and flushing the open interval.", interface)
        deadline = time.monotonic() + live.block_timeout_ms / 1000.0 + 0.05
        while time.monotonic() < deadline:
            loop.step(0.01)
        while loop.step(0) > 0:
            pass
        loop.emit(loop.builder.flush())
        loop.read_stats()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if loop.archive is not None:
            loop.archive.close()
        cap.close()
    archive = loop.archive.stats() if loop.archive is not None else loop.archive_stats
    summary = LiveSummary(
        interface=interface,
        method=method,
        linktype=cap.linktype,
        frames=loop.frames,
        wire_bytes=loop.wire_bytes,
        batches=loop.batches,
        flows=loop.flows,
        kernel_packets=loop.kstats.packets,
        kernel_drops=loop.kstats.drops,
        kernel_freezes=loop.kstats.freeze_q_cnt,
        archive_files=archive.files if archive else 0,
        archive_bytes=archive.bytes if archive else 0,
        flow_stats=loop.builder.stats,
    )
    log.info("Captured %d frames (%d bytes) on %s; %d flow batches, %d flows; the kernel saw %d packets "
             "and dropped %d.", summary.frames, summary.wire_bytes, interface, summary.batches,
             summary.flows, summary.kernel_packets, summary.kernel_drops)
    return summary


def _run_reload(callbacks: Sequence[Callable[[], None]]) -> None:
    log.info("SIGHUP: reloading (%d hooks).", len(callbacks))
    for cb in callbacks:
        try:
            cb()
        except Exception:  # a bad reload must not stop the capture; the old state stays
            log.exception("A reload hook failed; keeping the previous state.")
