"""Spoofing summary: spoofed traffic per interval and ingress link.

Theory of operation (DOMAIN.md section 5): a spoofed source address belongs
to someone innocent, so it is never reported as the culprit (masscan#170).
What an operator can act on is *where* spoofed packets enter: the ingress
link -- the VLAN, else the neighbour's source MAC -- of a network that lacks
BCP 38 ingress filtering. Each interval, flows whose spoofing reasons are set
(bogon or dark source, corsaro3's per-packet tags, sources judged
TTL-inconsistent or mostly tagged by the scan detector) are summed per link:
packets, distinct spoofed sources, packets per reason and per protocol. A link
with at least ``spoof_min_packets`` in the interval gets one ``fraud /
masquerade / ip-spoofer`` event with no ``source.ip``. State lives for one
interval; a late batch for an interval already summarised updates its event
(same id, next revision).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

from aggregator import spoof_rules as sr
from aggregator.detector import BatchView, Context, Fields
from aggregator.eventfmt import base_event, event_id, proto_name
from aggregator.grouping import group
from darknet_iodef.events import iso_time

__all__ = ["SpoofingDetector", "link_name"]

_VLAN_TAG = np.uint64(1 << 62)
_MAC_TAG = np.uint64(1 << 61)
_REVISIONS_KEPT = 10_000


def link_name(link: int) -> str:
    if link & (1 << 62):
        return f"vlan:{link & 0xFFFF}"
    if link & (1 << 61):
        mac = link & 0xFFFF_FFFF_FFFF
        return "mac:" + ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8))
    return "unknown"


class SpoofingDetector:
    name = "spoofing"

    def __init__(self, min_packets: int) -> None:
        self.min_packets = min_packets
        # interval start -> list of per-batch partial arrays
        self._parts: dict[int, list[dict[str, npt.NDArray]]] = {}
        self._interval_ns: dict[int, int] = {}
        self._revisions: OrderedDict[str, int] = OrderedDict()
        self.spoofed_packets_total = 0

    def process(self, view: BatchView) -> None:
        sel = np.flatnonzero(view.reasons != 0)
        if sel.size == 0:
            return
        f = Fields(view.flows, sel)
        vlan = f["vlan"].astype(np.uint64)
        mac = f["src_mac"].astype(np.uint64) & np.uint64(0xFFFF_FFFF_FFFF)
        link = np.where(vlan != 0, _VLAN_TAG | vlan, np.where(mac != 0, _MAC_TAG | mac, np.uint64(0)))
        pk = view.packets[sel]
        self.spoofed_packets_total += int(pk.sum())
        start = view.batch.interval_start_ns
        self._interval_ns[start] = view.batch.interval_ns
        self._parts.setdefault(start, []).append(
            {
                "link": link,
                "src": view.src_key[sel],
                "reasons": view.reasons[sel],
                "proto": f["protocol"],
                "packets": pk,
                "first": f["first_ns"],
                "last": f["last_ns"],
            }
        )

    def end_interval(self, now_ns: int, ctx: Context, force: bool = False) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for start in sorted(self._parts):
            if not force and start + self._interval_ns[start] > now_ns:
                continue
            parts = self._parts.pop(start)
            self._interval_ns.pop(start)
            events.extend(self._summarise(start, parts, now_ns, ctx))
        return events

    def _summarise(
        self, start: int, parts: list[dict[str, npt.NDArray]], now_ns: int, ctx: Context
    ) -> list[dict[str, Any]]:
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        g = group(cat["link"])
        packets = g.sum(cat["packets"])
        first = g.min(cat["first"])
        last = g.max(cat["last"])
        # distinct sources per link: unique (link group, source) pairs
        sg = group((g.inv.astype(np.uint64) << np.uint64(40)) ^ cat["src"])
        n_src = np.bincount(g.inv[sg.order[sg.starts]], minlength=len(g))
        out = []
        for i in np.flatnonzero(packets >= self.min_packets).tolist():
            members = g.order[g.starts[i] : (g.starts[i + 1] if i + 1 < len(g) else g.order.shape[0])]
            rs = cat["reasons"][members]
            pk = cat["packets"][members]
            reasons = {}
            for bit, name in sr.REASONS.items():
                n = int(pk[(rs & bit) != 0].sum())
                if n:
                    reasons[name] = n
            pr = cat["proto"][members]
            protos = {proto_name(int(p)): int(pk[pr == p].sum()) for p in np.unique(pr).tolist()}
            link = link_name(int(g.keys[i]))
            key = f"{link}|{start}"
            eid = event_id("spoofing", key, start)
            rev = self._revisions.pop(eid, 0) + 1
            self._revisions[eid] = rev
            while len(self._revisions) > _REVISIONS_KEPT:
                self._revisions.popitem(last=False)
            # time.source is the first spoofed packet; the id keys on the interval
            ev = base_event("spoofing", "ip-spoofer", key, start, int(last[i]), now_ns, rev, ctx.feed_name)
            ev["time.source"] = iso_time(int(first[i]))
            ev.update(
                {
                    "extra.ingress": link,
                    "extra.packets": int(packets[i]),
                    "extra.sources_distinct": int(n_src[i]),
                    "extra.reasons": reasons,
                    "extra.protocols": protos,
                    "extra.confidence": 0.9 if ("bogon" in reasons or "inside-darknet" in reasons) else 0.7,
                }
            )
            out.append(ev)
        return out

    def state(self) -> tuple[dict[str, npt.NDArray], dict[str, Any]]:
        arrays: dict[str, npt.NDArray] = {}
        meta: dict[str, Any] = {
            "revisions": list(self._revisions.items()),
            "intervals": [],
            "spoofed_packets_total": self.spoofed_packets_total,
        }
        for start, parts in self._parts.items():
            cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            for k, v in cat.items():
                arrays[f"spoof.{start}.{k}"] = v
            meta["intervals"].append([start, self._interval_ns[start]])
        return arrays, meta

    def restore(self, arrays: dict[str, npt.NDArray], meta: dict[str, Any]) -> None:
        self._revisions = OrderedDict((str(k), int(v)) for k, v in meta["revisions"])
        self.spoofed_packets_total = int(meta["spoofed_packets_total"])
        self._parts = {}
        self._interval_ns = {}
        for start, ns in meta["intervals"]:
            names = ("link", "src", "reasons", "proto", "packets", "first", "last")
            self._parts[int(start)] = [{k: arrays[f"spoof.{start}.{k}"] for k in names}]
            self._interval_ns[int(start)] = int(ns)
