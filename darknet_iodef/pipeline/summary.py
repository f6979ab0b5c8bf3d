"""What a pipeline run found, as ``summary.json`` and a few lines for people.

Built from the newest revision of each event (``extra.event_id``), so a
source reported in three revisions counts once; figures only, no addresses.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SourceCounter", "event_summary", "summary_text"]


class SourceCounter:
    """Distinct 16-byte source addresses over many batches (sorted word pairs, numpy)."""

    def __init__(self) -> None:
        self._words = np.zeros((0, 2), dtype=np.uint64)

    def add(self, addrs: npt.NDArray[np.void]) -> None:
        if addrs.shape[0] == 0:
            return
        words = np.ascontiguousarray(addrs).view(np.uint64).reshape(-1, 2)
        both = np.concatenate([self._words, words])
        both = both[np.lexsort((both[:, 1], both[:, 0]))]
        keep = np.ones(both.shape[0], dtype=bool)
        keep[1:] = np.any(both[1:] != both[:-1], axis=1)
        self._words = both[keep]

    def __len__(self) -> int:
        return int(self._words.shape[0])


def _newest(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    best: dict[str, Mapping[str, Any]] = {}
    for ev in events:
        eid = str(ev.get("extra.event_id"))
        old = best.get(eid)
        if old is None or int(ev.get("extra.revision") or 0) >= int(old.get("extra.revision") or 0):
            best[eid] = ev
    return list(best.values())


def event_summary(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts by kind from the newest revision of every event."""
    newest = _newest(events)
    scans = [e for e in newest if e.get("classification.type") == "scanner"]
    backscatter = [e for e in newest if e.get("classification.type") == "ddos"]
    spoofing = [e for e in newest if e.get("classification.type") == "masquerade"]
    tools = Counter(str(e.get("extra.tool") or "unidentified") for e in scans)
    return {
        "events": len(newest),
        "scans": len(scans),
        "scans_by_tool": dict(sorted(tools.items(), key=lambda kv: (-kv[1], kv[0]))),
        "scan_sources": len({e.get("source.ip") for e in scans}),
        "scans_spoofed": sum(1 for e in scans if e.get("extra.spoofed")),
        "scans_known_scanners": sum(1 for e in scans if e.get("extra.known_scanner")),
        "backscatter_events": len(backscatter),
        "victims": len({e.get("source.ip") for e in backscatter}),
        "spoofing_summaries": len(spoofing),
        "spoofed_packets": sum(int(e.get("extra.packets") or 0) for e in spoofing),
        "ingress_links": len({e.get("extra.ingress") for e in spoofing}),
    }


def summary_text(s: Mapping[str, Any]) -> str:
    """The short human summary ``run`` prints."""
    sensor, ev, rep = s["sensor"], s["events"], s["reports"]
    tools = ", ".join(f"{k} {v}" for k, v in ev["scans_by_tool"].items()) or "none"
    lines = [
        f"packets   {sensor['packets']:,} read, {sensor['dark_packets']:,} to the darknet, "
        f"from {sensor['sources']:,} sources; {sensor['flows']:,} flows in {sensor['intervals']} interval(s)",
        f"scans     {ev['scans']} from {ev['scan_sources']} sources -- by tool: {tools}",
        f"victims   {ev['victims']} DoS victims seen in backscatter ({ev['backscatter_events']} events)",
        f"spoofing  {ev['spoofed_packets']:,} spoofed packets on {ev['ingress_links']} ingress link(s); "
        f"{ev['scans_spoofed']} scans from spoofed sources (not reported)",
        f"reports   {rep['documents']} IODEF documents for {rep['recipients']} recipients "
        f"({rep['unassigned']} without a contact) -> {rep['directory']}",
    ]
    return "\n".join(lines)


def dumps(summary: Mapping[str, Any]) -> bytes:
    return json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n"
