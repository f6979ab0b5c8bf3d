"""Backscatter detector: attack vectors per (victim, protocol).

Theory of operation (DOMAIN.md section 3; which packets and which victim in
:mod:`aggregator.backscatter_rules`, thresholds in :mod:`aggregator.thresholds`).

One columnar row per attack vector, keyed by (victim, protocol) -- for ICMP
errors the quoted protocol. A vector is reported when it has at least
``bs_min_packets`` packets, lasted at least ``bs_min_duration_s`` and peaked
at ``bs_min_window_packets`` in a 60 s window sliding by 10 s; it ends after
``bs_idle_s`` of silence.

The sliding window uses the flow tuples' ``slot_counts`` (packets per 10 s
sixth of the interval). Each vector keeps a ring of its last twelve slots
with the absolute slot number of the newest, so windows that straddle two
intervals -- also when a second batch of the interval comes from another
sensor -- are summed with the full counts; and the peak is a maximum over windows, never a rate merged
across intervals (corsaro3 PR #106's bug). Ongoing vectors are re-emitted
with a higher revision as they grow (the other half of that bug).

Attackers are counted as distinct dark-side /16s in a hash set of
(vector << 16 | /16), so a flood that spoofs a whole /8 costs at most 256
entries per vector (corsaro3 PR #107), not one per address. Victim ports:
a small table of (vector, port) -> packets gives the top attacked ports.
Rates at the victim are extrapolated by 2^32 / n (Moore et al.).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import numpy.typing as npt

from aggregator import spoof_rules as sr
from aggregator.detector import BatchView, Context, Fields
from aggregator.eventfmt import base_event, proto_name
from aggregator.grouping import group
from aggregator.keyindex import KeyIndex, mix64
from aggregator.keys import addr_halves, addr_key, net16
from aggregator.table import Column, Table
from aggregator.thresholds import Thresholds
from darknet_iodef.flowtuple import SLOTS

__all__ = ["RESPONSES", "BackscatterDetector"]

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min
#: what the victim sent, counted per vector as evidence
RESPONSES = ("tcp-syn-ack", "tcp-rst", "icmp-echo-reply", "icmp-error", "icmp-other")
W = SLOTS  # slots in one 60 s window (10 s slots of a 60 s interval)
#: slots remembered per vector: two windows, so that a later batch of the same
#: interval (another sensor, another chunk) re-evaluates the windows that
#: straddle the previous interval with the full counts
RING = 2 * W

VECTOR_COLUMNS = {
    "vid": Column("<u4"),
    "proto": Column("u1"),
    "hi": Column("<u8"),
    "lo": Column("<u8"),
    "first_ns": Column("<i8", I64_MAX),
    "last_ns": Column("<i8", I64_MIN),
    "packets": Column("<u4"),
    "bytes": Column("<u8"),
    **{f"ring{j}": Column("<u4") for j in range(RING)},
    "ring_end": Column("<i8", I64_MIN),
    "peak": Column("<u4"),
    "nets": Column("<u4"),
    "ports": Column("<u4"),
    **{f"resp{j}": Column("<u4") for j in range(len(RESPONSES))},
    "revision": Column("<u4"),
    "emit_ns": Column("<i8", I64_MIN),
    "emit_packets": Column("<u4"),
}
PORT_COLUMNS = {"packets": Column("<u4")}


def _vector_keys(victim: npt.NDArray[np.uint64], proto: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    is4 = victim < np.uint64(1 << 32)
    out = (proto << np.uint64(32)) | victim
    if not is4.all():
        h = mix64(victim[~is4] ^ (proto[~is4] * np.uint64(0x9E3779B97F4A7C15)))
        out[~is4] = (h & np.uint64((1 << 63) - 2)) | np.uint64(1 << 63)
    return out


class BackscatterDetector:
    name = "backscatter"

    def __init__(self, th: Thresholds) -> None:
        self.th = th
        self.vec = Table(VECTOR_COLUMNS)
        self.ports = Table(PORT_COLUMNS)
        self.net_pairs = KeyIndex(with_rows=False)
        self.next_vid = 1
        self.unresolved_total = 0
        self.evicted_total = 0

    def process(self, view: BatchView) -> None:
        use = view.backscatter & ((view.reasons & (sr.BOGON | sr.DARK)) == 0)
        idx = np.flatnonzero(use)
        if idx.size == 0:
            return
        f = Fields(view.flows, idx)
        err = view.icmp_error[idx]
        # ICMP errors: the victim is the quoted destination
        victim_addr = np.where(err, f["quoted_dst_ip"], f["src_ip"])
        resolved = ~err | (f["quoted_dst_ip"] != np.zeros(1, dtype="V16")[0])
        self.unresolved_total += int(view.packets[idx][~resolved].sum())
        idx, f, err, victim_addr = idx[resolved], f.select(resolved), err[resolved], victim_addr[resolved]
        if idx.size == 0:
            return
        vkey, _ = addr_key(victim_addr)
        proto = np.where(err & (f["quoted_protocol"] != 0), f["quoted_protocol"], f["protocol"]).astype(
            np.uint64
        )
        g = group(_vector_keys(vkey, proto))
        rows, new = self.vec.upsert(g.keys)
        c = self.vec.cols
        pk = view.packets[idx]
        n_new = int(new.sum())
        if n_new:
            c["vid"][rows[new]] = (np.arange(self.next_vid, self.next_vid + n_new) & 0xFFFF_FFFF).astype(
                np.uint32
            )
            self.next_vid += n_new
            first = g.order[g.starts[new]]
            hi, lo = addr_halves(victim_addr[first])
            c["hi"][rows[new]] = hi
            c["lo"][rows[new]] = lo
            c["proto"][rows[new]] = proto[first].astype(np.uint8)
        c["first_ns"][rows] = np.minimum(c["first_ns"][rows], g.min(f["first_ns"]))
        c["last_ns"][rows] = np.maximum(c["last_ns"][rows], g.max(f["last_ns"]))
        c["packets"][rows] = np.minimum(c["packets"][rows] + g.sum(pk), 0xFFFF_FFFF).astype(np.uint32)
        c["bytes"][rows] += g.sum(pk * f["ip_len"].astype(np.uint64))
        # evidence: what the victim sent
        p = f["protocol"]
        flags = f["tcp_flags"]
        itype = f["src_port"]
        kinds = np.full(idx.shape[0], 4, dtype=np.int64)
        kinds[(p == 6) & ((flags & 0x12) == 0x12)] = 0
        kinds[(p == 6) & ((flags & 0x04) != 0)] = 1
        kinds[((p == 1) & (itype == 0)) | ((p == 58) & (itype == 129))] = 2
        kinds[err] = 3
        for j in range(len(RESPONSES)):
            col = c[f"resp{j}"]
            col[rows] += g.sum(np.where(kinds == j, pk, 0)).astype(np.uint32)
        self._window(view, rows, g, f)
        # attacker /16s on the dark side
        vid = c["vid"][rows].astype(np.uint64)[g.inv]
        ng = group((vid << np.uint64(16)) | net16(f["dst_ip"]))
        fresh = self.net_pairs.add(ng.keys)
        owner = g.inv[ng.order[ng.starts]]
        c["nets"][rows] += np.bincount(owner[fresh], minlength=rows.shape[0]).astype(np.uint32)
        # victim ports (SYN-ACK/RST: the source port; ICMP errors: the quoted destination port)
        tcpudp = np.isin(proto, (6, 17, 132))
        vport = np.where(err, f["quoted_dst_port"], f["src_port"]).astype(np.uint64)
        if tcpudp.any():
            sel = np.flatnonzero(tcpudp)
            pg = group((vid[sel] << np.uint64(16)) | vport[sel])
            prow, pnew = self.ports.upsert(pg.keys)
            self.ports.cols["packets"][prow] += pg.sum(pk[sel]).astype(np.uint32)
            owner = g.inv[sel][pg.order[pg.starts]]
            c["ports"][rows] += np.bincount(owner[pnew], minlength=rows.shape[0]).astype(np.uint32)

    def _window(self, view: BatchView, rows: npt.NDArray[np.int64], g: Any, f: Fields) -> None:
        """Fold the batch's slot counts into each vector's ring; update the peak."""
        c = self.vec.cols
        batch = view.batch
        slot_ns = max(batch.interval_ns // SLOTS, 1)
        b = batch.interval_start_ns // slot_ns  # absolute slot of the batch's slot 0
        counts = np.stack([g.sum(f["slot_counts"][:, j].astype(np.int64)) for j in range(SLOTS)], axis=1)
        a = c["ring_end"][rows]
        fresh = a == I64_MIN
        end = np.where(fresh, b + SLOTS - 1, np.maximum(a, b + SLOTS - 1))
        span = RING
        buf = np.zeros((rows.shape[0], span), dtype=np.int64)
        base = end - (span - 1)  # absolute slot of buf[:, 0]
        ring = np.stack([c[f"ring{j}"][rows] for j in range(RING)], axis=1).astype(np.int64)
        r_i = np.arange(rows.shape[0])
        for j in range(RING):
            pos = np.where(fresh, -1, a - (RING - 1) + j - base)
            ok = (pos >= 0) & (pos < span)
            buf[r_i[ok], pos[ok]] += ring[ok, j]
        for j in range(SLOTS):
            pos = b + j - base
            ok = (pos >= 0) & (pos < span)
            buf[r_i[ok], pos[ok]] += counts[ok, j]
        csum = np.concatenate([np.zeros((rows.shape[0], 1), np.int64), np.cumsum(buf, axis=1)], axis=1)
        windows = csum[:, W:] - csum[:, :-W]
        c["peak"][rows] = np.maximum(c["peak"][rows], windows.max(axis=1).astype(np.uint32))
        for j in range(RING):
            c[f"ring{j}"][rows] = buf[:, j].astype(np.uint32)
        c["ring_end"][rows] = end

    def qualifies(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        c = self.vec.cols
        th = self.th
        return np.asarray(
            (c["packets"][rows] >= th.bs_min_packets)
            & ((c["last_ns"][rows] - c["first_ns"][rows]) >= th.bs_min_duration_ns)
            & (c["peak"][rows] >= th.bs_min_window_packets)
        )

    def end_interval(self, now_ns: int, ctx: Context, force: bool = False) -> list[dict[str, Any]]:
        size = self.vec.size
        if size == 0:
            return []
        c = self.vec.cols
        rows = np.arange(size, dtype=np.int64)
        ok = self.qualifies(rows)
        changed = c["packets"][:size] != c["emit_packets"][:size]
        rev = c["revision"][:size]
        recent = (rev == 0) | (now_ns - c["emit_ns"][:size] >= self.th.revision_interval_ns) | force
        expired = c["last_ns"][:size] < now_ns - self.th.bs_idle_ns
        emit = np.flatnonzero(ok & ((changed & recent) | (expired & (changed | (rev > 0)))))
        events = self._events(emit, now_ns, expired, ctx) if emit.size else []
        c["revision"][emit] += 1
        c["emit_ns"][emit] = now_ns
        c["emit_packets"][emit] = c["packets"][emit]
        keep = ~expired
        over = int(keep.sum()) - self.th.max_vectors
        if over > 0:
            cand = np.flatnonzero(keep & (rev == 0))
            order = np.lexsort((c["last_ns"][cand], c["packets"][cand]))
            gone = cand[order[: over + self.th.max_vectors // 10]]
            keep[gone] = False
            self.evicted_total += gone.size
        if not keep.all():
            self.vec.compact(keep)
            live = np.sort(self.vec.cols["vid"][: self.vec.size].astype(np.uint64))
            k = self.net_pairs.keys()
            self.net_pairs.rebuild(k[_member(k >> np.uint64(16), live)])
            if self.ports.size:
                pk = self.ports.cols["key"][: self.ports.size]
                self.ports.compact(_member(pk >> np.uint64(16), live))
        return events

    def _top_ports(self, vids: npt.NDArray[np.uint64]) -> dict[int, list[tuple[int, int]]]:
        out: dict[int, list[tuple[int, int]]] = {}
        if self.ports.size == 0:
            return out
        keys = self.ports.cols["key"][: self.ports.size]
        hit = np.flatnonzero(np.isin(keys >> np.uint64(16), vids))
        for i in hit.tolist():
            k = int(keys[i])
            out.setdefault(k >> 16, []).append((k & 0xFFFF, int(self.ports.cols["packets"][i])))
        for lst in out.values():
            lst.sort(key=lambda t: (-t[1], t[0]))
        return out

    def _events(
        self, emit: npt.NDArray[np.int64], now_ns: int, expired: npt.NDArray[np.bool_], ctx: Context
    ) -> list[dict[str, Any]]:
        c = self.vec.cols
        th = self.th
        tops = self._top_ports(c["vid"][emit].astype(np.uint64))
        events = []
        for r in emit.tolist():
            hi, lo = int(c["hi"][r]), int(c["lo"][r])
            raw = ((hi << 64) | lo).to_bytes(16, "big")
            ip = ipaddress.IPv6Address(raw)
            victim = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
            proto = int(c["proto"][r])
            first, last = int(c["first_ns"][r]), int(c["last_ns"][r])
            packets, peak = int(c["packets"][r]), int(c["peak"][r])
            dur = max((last - first) / 1e9, 1.0)
            ports = tops.get(int(c["vid"][r]), [])
            ev = base_event(
                "backscatter",
                "backscatter",
                f"{victim}|{proto}",
                first,
                last,
                now_ns,
                int(c["revision"][r]) + 1,
                ctx.feed_name,
            )
            ev.update(
                {
                    "source.ip": victim,
                    "protocol.transport": proto_name(proto),
                    "extra.packets": packets,
                    "extra.bytes": int(c["bytes"][r]),
                    "extra.peak_window_packets": peak,
                    "extra.attacker_networks_16": int(c["nets"][r]),
                    "extra.rate_pps_estimated": round(packets / dur * th.extrapolation, 1),
                    "extra.peak_rate_pps_estimated": round(peak / 60.0 * th.extrapolation, 1),
                    "extra.responses": {
                        name: int(c[f"resp{j}"][r])
                        for j, name in enumerate(RESPONSES)
                        if int(c[f"resp{j}"][r])
                    },
                    "extra.ports_distinct": int(c["ports"][r]),
                    "extra.ports": [{"port": p, "packets": n} for p, n in ports[:10]],
                    "extra.confidence": round(
                        min(1.0, 0.5 + 0.5 * min(1.0, peak / (2 * th.bs_min_window_packets))), 2
                    ),
                    "extra.state": "ended" if bool(expired[r]) else "ongoing",
                }
            )
            if ports:
                ev["source.port"] = ports[0][0]
            events.append(ev)
        return events

    def state(self) -> tuple[dict[str, npt.NDArray], dict[str, Any]]:
        arrays = {**self.vec.state("bs.vec"), **self.ports.state("bs.ports")}
        arrays["bs.net_pairs"] = self.net_pairs.keys()
        meta = {
            "next_vid": self.next_vid,
            "unresolved_total": self.unresolved_total,
            "evicted_total": self.evicted_total,
        }
        return arrays, meta

    def restore(self, arrays: dict[str, npt.NDArray], meta: dict[str, Any]) -> None:
        self.vec.restore("bs.vec", arrays)
        self.ports.restore("bs.ports", arrays)
        self.net_pairs.rebuild(arrays["bs.net_pairs"])
        self.next_vid = int(meta["next_vid"])
        self.unresolved_total = int(meta["unresolved_total"])
        self.evicted_total = int(meta["evicted_total"])


def _member(values: npt.NDArray[np.uint64], sorted_set: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    if sorted_set.size == 0:
        return np.zeros(values.shape[0], dtype=bool)
    i = np.clip(np.searchsorted(sorted_set, values), 0, sorted_set.size - 1)
    return np.asarray(sorted_set[i] == values)
