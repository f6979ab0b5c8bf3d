"""The one detector lifecycle, and the per-batch view detectors share.

Theory of operation (STYLE.md habit 6, after corsaro3's plugins): every
detector is configured from :class:`~aggregator.settings.AggregatorSettings`
and the derived :class:`~aggregator.thresholds.Thresholds` (validation
happens there, at start-up), then

1. ``process(view)`` for each flow batch -- several batches of the same
   interval (from several sensors) are simply processed in turn: the state
   is cumulative, so this *is* the merge of partial results;
2. ``end_interval(now_ns, ctx, force)`` once event time has passed an interval:
   expire idle state, and emit new or updated events (returned as dicts);
3. ``state()`` / ``restore(arrays, meta)`` for checkpoints.

Detectors are pure: arrays in, event dicts out; no files, clocks or sockets.
:class:`BatchView` holds what several detectors need from one batch,
computed once by the engine; the scan detector refines ``reasons`` (TTL
inconsistency needs per-source history) before the spoofing detector reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from aggregator.known_scanners import KnownScanners
from darknet_iodef.flowtuple import FlowBatch

__all__ = ["BatchView", "Context", "Detector", "Fields"]


class Fields:
    """Selected rows of a flow array, one field at a time.

    Copying whole structured records with fancy indexing costs ~0.5 us a row
    (120-byte records with sub-arrays); a detector needs a dozen narrow
    fields, so each is gathered on first use and cached.
    """

    __slots__ = ("_cache", "_flows", "idx")

    def __init__(self, flows: npt.NDArray[np.void], idx: npt.NDArray[np.int64]) -> None:
        self._flows = flows
        self.idx = idx
        self._cache: dict[str, npt.NDArray[Any]] = {}

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        got = self._cache.get(name)
        if got is None:
            got = self._cache[name] = self._flows[name][self.idx]
        return got

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    def select(self, mask: npt.NDArray[np.bool_]) -> Fields:
        return Fields(self._flows, self.idx[mask])


@dataclass(slots=True)
class BatchView:
    batch: FlowBatch
    src_key: npt.NDArray[np.uint64]
    src_is4: npt.NDArray[np.bool_]
    dst32: npt.NDArray[np.uint64]
    #: flow tuples that are backscatter (victim side), and of those the ICMP errors
    backscatter: npt.NDArray[np.bool_]
    icmp_error: npt.NDArray[np.bool_]
    #: spoofing reason bits per flow (spoof_rules); 0 = not judged spoofed
    reasons: npt.NDArray[np.uint16]
    #: packets of each flow (uint64 for sums)
    packets: npt.NDArray[np.uint64]
    #: source address == destination address
    same_addr: npt.NDArray[np.bool_]

    @property
    def flows(self) -> npt.NDArray[np.void]:
        return self.batch.flows

    def part(self, lo: int, hi: int, samples: npt.NDArray[np.void]) -> BatchView:
        """Flows ``lo:hi`` of this view (with ``samples`` instead of the batch's)."""
        if lo == 0 and hi >= self.batch.flows.shape[0] and samples.shape[0] == self.batch.samples.shape[0]:
            return self
        b = self.batch
        sub = FlowBatch(b.interval_start_ns, b.interval_ns, b.sensor, b.flows[lo:hi], samples, b.stats)
        return BatchView(
            batch=sub,
            src_key=self.src_key[lo:hi],
            src_is4=self.src_is4[lo:hi],
            dst32=self.dst32[lo:hi],
            backscatter=self.backscatter[lo:hi],
            icmp_error=self.icmp_error[lo:hi],
            reasons=self.reasons[lo:hi],
            packets=self.packets[lo:hi],
            same_addr=self.same_addr[lo:hi],
        )


@dataclass(frozen=True, slots=True)
class Context:
    """What emission needs besides detector state."""

    feed_name: str
    known: KnownScanners


class Detector(Protocol):
    name: str

    def process(self, view: BatchView) -> None: ...

    def end_interval(self, now_ns: int, ctx: Context, force: bool = False) -> list[dict[str, Any]]:
        """Expire and emit as of ``now_ns``; ``force`` (end of input) ignores revision pacing."""
        ...

    def state(self) -> tuple[dict[str, npt.NDArray], dict[str, Any]]: ...

    def restore(self, arrays: dict[str, npt.NDArray], meta: dict[str, Any]) -> None: ...
