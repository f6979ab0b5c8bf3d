"""The aggregator core: flow batches in, events out (sans-I/O).

Theory of operation: the engine owns event time. Batches arrive per
interval (possibly several per interval, from several sensors); when a batch
of a later interval arrives, every detector ends the previous interval
(expiry, emission) at that interval's end, so timeouts and windows depend on
packet timestamps only and replaying the same flows gives the same events.
Per batch it computes once what all detectors share (:class:`BatchView`):
integer source keys, 32-bit destinations, the backscatter split, and the
source-level spoofing reasons (bogon, inside the darknet). Detectors then run
in a fixed order -- scan (adds per-packet and per-source spoofing reasons),
backscatter, spoofing summary (reads the reasons).

Restart without duplicates: the engine remembers, per sensor, the last
interval it processed; a batch at or before it is skipped and counted
(``replayed_batches_total``), and detector state -- including each event's
revision and the packet count it was last emitted with -- comes back from
the checkpoint, so nothing already emitted is emitted again and nothing
in flight is lost.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from aggregator import spoof_rules as sr
from aggregator.backscatter import BackscatterDetector
from aggregator.backscatter_rules import classify_backscatter
from aggregator.bogons import BogonTable, load_bogons
from aggregator.detector import BatchView, Context, Detector
from aggregator.keys import addr_halves, dst32_of_halves, key_of_halves
from aggregator.known_scanners import KnownScanners
from aggregator.scan import ScanDetector
from aggregator.settings import AggregatorSettings
from aggregator.spoofing import SpoofingDetector
from aggregator.thresholds import Thresholds, thresholds_for
from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.flowtuple import FlowBatch

__all__ = ["Aggregator"]

log = logging.getLogger(__name__)
#: flow tuples per processing step (bounds the temporaries to tens of MB)
CHUNK_FLOWS = 1 << 18
#: batches must start before 2106 (event times are also kept in uint32 seconds)
MAX_TIME_NS = (1 << 32) * 1_000_000_000 - 2 * 86_400 * 1_000_000_000
MAX_INTERVAL_NS = 86_400 * 1_000_000_000


def _clamp_times(batch: FlowBatch) -> FlowBatch:
    """Flow times outside their interval (a broken or hostile sensor) are clamped to it."""
    f = batch.flows
    lo, hi = batch.interval_start_ns, batch.interval_start_ns + batch.interval_ns
    if f.shape[0] == 0:
        return batch
    first, last = f["first_ns"], f["last_ns"]
    if first.min() >= lo and last.max() <= hi and first.max() <= hi and last.min() >= lo:
        return batch
    f = f.copy()
    f["first_ns"] = np.clip(f["first_ns"], lo, hi)
    f["last_ns"] = np.clip(f["last_ns"], f["first_ns"], hi)
    return FlowBatch(batch.interval_start_ns, batch.interval_ns, batch.sensor, f, batch.samples, batch.stats)


class Aggregator:
    """Feed :meth:`process` batches; it returns the events each one completes."""

    def __init__(
        self,
        settings: AggregatorSettings,
        darknet: DarkPrefixes,
        known: KnownScanners | None = None,
        bogons: BogonTable | None = None,
    ) -> None:
        self.settings = settings
        self.darknet = darknet
        self.th: Thresholds = thresholds_for(settings, darknet.size_v4, darknet.size_v6)
        self.known = known or KnownScanners()
        self.bogons = bogons or load_bogons()
        # an internal telescope (DAEDALUS-style, inside a private network) sees real
        # hosts with special-purpose addresses: those prefixes are not bogons here
        self.internal = (
            DarkPrefixes.parse(settings.internal_sources, "internal_sources")
            if (settings.internal_sources)
            else None
        )
        self.ctx = Context(settings.feed_name, self.known)
        self.scan = ScanDetector(self.th)
        self.backscatter = BackscatterDetector(self.th)
        self.spoofing = SpoofingDetector(self.th.spoof_min_packets)
        #: in processing order: the scan detector adds the spoofing reasons the summary reads
        self.detectors: tuple[Detector, ...] = (self.scan, self.backscatter, self.spoofing)
        self.current_end: int | None = None  # end of the newest interval seen
        self.watermarks: dict[str, int] = {}
        self.counters: dict[str, int] = {
            "batches_total": 0,
            "flows_total": 0,
            "replayed_batches_total": 0,
            "events_total": 0,
            "rejected_batches_total": 0,
        }

    def process(self, batch: FlowBatch) -> list[dict[str, Any]]:
        if not (0 <= batch.interval_start_ns < MAX_TIME_NS and 0 < batch.interval_ns <= MAX_INTERVAL_NS):
            # a hostile or broken batch: its times would poison every window and timeout
            log.warning(
                "Skipping a flow batch from %r with interval start %d ns and length %d ns",
                batch.sensor,
                batch.interval_start_ns,
                batch.interval_ns,
            )
            self.counters["rejected_batches_total"] += 1
            return []
        batch = _clamp_times(batch)
        last = self.watermarks.get(batch.sensor)
        if last is not None and batch.interval_start_ns <= last:
            self.counters["replayed_batches_total"] += 1
            return []
        events: list[dict[str, Any]] = []
        if self.current_end is not None and batch.interval_start_ns >= self.current_end:
            # event time has reached this batch's start: every interval before it is over
            events = self.end_interval(batch.interval_start_ns)
        self.watermarks[batch.sensor] = batch.interval_start_ns
        end = batch.interval_start_ns + batch.interval_ns
        self.current_end = end if self.current_end is None else max(self.current_end, end)
        self.counters["batches_total"] += 1
        self.counters["flows_total"] += int(batch.flows.shape[0])
        if batch.flows.shape[0]:
            view = self._view(batch)
            self.scan.prepare(view)
            # in chunks: every detector's state is cumulative, so a batch processed
            # piecewise gives the same state, with a fraction of the temporaries
            empty = batch.samples[:0]
            for lo in range(0, batch.flows.shape[0], CHUNK_FLOWS):
                part = view.part(lo, lo + CHUNK_FLOWS, empty)
                for det in self.detectors:
                    det.process(part)
        return events

    def _view(self, batch: FlowBatch) -> BatchView:
        f = batch.flows
        hi, lo = addr_halves(f["src_ip"])  # once: keys, bogons and the darknet test share them
        key, is4 = key_of_halves(hi, lo)
        bs, err = classify_backscatter(f)
        reasons = np.zeros(f.shape[0], dtype=np.uint16)
        bogon = self.bogons.is_bogon_halves(hi, lo)
        if self.internal is not None and bogon.any():
            bogon[bogon] &= ~self.internal.contains_addr16(f["src_ip"][bogon])
        reasons[bogon] |= np.uint16(sr.BOGON)
        dark = np.zeros(f.shape[0], dtype=bool)
        dark[is4] = self.darknet.contains_v4(key[is4].astype(np.uint32))
        if not is4.all():
            v6 = ~is4
            dark[v6] = self.darknet.contains_addr16(f["src_ip"][v6])
        reasons[dark] |= np.uint16(sr.DARK)
        dhi, dlo = addr_halves(f["dst_ip"])
        return BatchView(
            batch=batch,
            src_key=key,
            src_is4=is4,
            dst32=dst32_of_halves(dhi, dlo),
            backscatter=bs,
            icmp_error=err,
            reasons=reasons,
            packets=f["packet_count"].astype(np.uint64),
            same_addr=(hi == dhi) & (lo == dlo),
        )

    def end_interval(self, now_ns: int, force: bool = False) -> list[dict[str, Any]]:
        """Expire and emit as of event time ``now_ns`` (``force``: ignore revision pacing)."""
        self.known.maybe_reload()
        events: list[dict[str, Any]] = []
        for det in self.detectors:
            events += det.end_interval(now_ns, self.ctx, force)
        events.sort(key=lambda e: (e["time.source"], e["extra.event_id"], e["extra.revision"]))
        self.counters["events_total"] += len(events)
        return events

    def flush(self) -> list[dict[str, Any]]:
        """At the end of the input: emit every qualifying change now (state is kept)."""
        if self.current_end is None:
            return []
        return self.end_interval(self.current_end, force=True)

    def metrics(self) -> dict[str, int]:
        """The counters under their Prometheus names (``darknet_aggregator_*``)."""
        return {f"darknet_aggregator_{name}": value for name, value in sorted(self.stats().items())}

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out.update(
            sources_tracked=self.scan.src.size,
            sources_evicted_total=self.scan.evicted_total,
            sources_expired_total=self.scan.expired_total,
            vectors_tracked=self.backscatter.vec.size,
            vectors_evicted_total=self.backscatter.evicted_total,
            backscatter_unresolved_packets_total=self.backscatter.unresolved_total,
            spoofed_packets_total=self.spoofing.spoofed_packets_total,
            decoy_groups=len(self.scan.decoy_groups),
        )
        return out
