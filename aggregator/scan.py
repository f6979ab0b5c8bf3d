"""Scan detector: per-source scans, their kind and tool, and who is spoofed.

Theory of operation (DOMAIN.md sections 4 and 5; thresholds in
:mod:`aggregator.thresholds`, tool table in :mod:`aggregator.fingerprints`,
spoofing reasons in :mod:`aggregator.spoof_rules`).

State is one columnar row per source (:class:`~aggregator.table.Table`,
~110 bytes) so ten million sources fit in about 1.3 GB with the index:

- packets, bytes, first/last seen, hop-count range, spoofing reason bits,
  per-tool match counts of sampled probes, and the event bookkeeping
  (revision, time and packet count at the last emission);
- distinct dark destinations, *exact*: the first two destinations are kept
  in the row, further ones go into one global hash set of (source serial <<
  32 | destination) -- a source with one or two destinations (most of
  background radiation) costs no set entry. Past ``scan_exact_cap``
  destinations a source moves to a HyperLogLog sketch (:mod:`aggregator.hll`,
  4 KB, 1.6 % error), seeded with what it had;
- ports: the first (protocol, port) in the row; once a source uses a second
  one, a port table row per (source, protocol, port) holds packets and its
  own distinct destinations (a set of (port row << 32 | destination)). The
  main port's row is seeded with the source's totals at that moment, so a
  destination hit on it before and after is counted twice there (the
  per-source count stays exact). At most ``scan_port_cap`` ports are tracked.

Judgement per source: spoofed if it has a source-level reason (bogon and
dark sources never reach this detector: the engine routes them to the
spoofing summary), hop counts spanning more than ``spoof_hop_spread`` without
a tool fingerprint to explain them, or at least ``spoof_packet_fraction`` of
its packets tagged by corsaro3's per-packet rules. A spoofed source is never
reported as a scanner. Tagged flows never count towards a scan.

A source is a scanner when it reached ``scan_min_destinations`` distinct dark
destinations at an estimated Internet-wide rate of at least
``scan_min_rate_pps`` (packets / duration * 2^32 / n), or ``scan_min_ports``
distinct ports. Kind (bro-simple-scan): at most ``scan_vertical_max_hosts``
hosts and many ports = vertical; one port = horizontal; at most
``scan_strobe_max_ports`` ports = strobe if the hosts are probed on 1.5 of
them on average, else horizontal (Mirai's 23 + 2323); else random. The event is per
source (one report per scanner, as receivers ask) with the per
(protocol, port) figures in ``extra.ports``.

The event is emitted when the source first qualifies, updated (same id,
next revision) when it grew and ``revision_interval_s`` of event time passed
since the last revision, and once more when it ends (idle timeout). Past
``max_sources`` the least useful rows go first (never-reported, fewest
packets, longest idle), counted in ``evicted_total``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from aggregator import spoof_rules as sr
from aggregator.detector import BatchView, Context, Fields
from aggregator.eventfmt import base_event, proto_name
from aggregator.fingerprints import TOOLS, UNICORNSCAN, is_syn, tool_matches, tools_tested, unicorn_value
from aggregator.grouping import group
from aggregator.hll import HllRows
from aggregator.keyindex import KeyIndex, mix64
from aggregator.keys import addr_halves, addr_key, dst32
from aggregator.table import Column, Table
from aggregator.thresholds import Thresholds

__all__ = ["ScanDetector"]

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min
_U32 = np.uint64(32)
_NT = len(TOOLS)
_UNI = TOOLS.index(UNICORNSCAN)
SAMPLES_TESTED = 255
# ``flags`` bits: Unicornscan reference set; packets this interval; packets since
# the last revision (so the interval end looks only at rows that can emit)
F_UNI_SET, F_TOUCHED, F_PENDING = 1, 2, 4
DECOY_MAX_GROUP = 129
DECOY_MAX_NEW_PER_BATCH = 10_000
STROBE_PORTS_PER_HOST = 1.5

SOURCE_COLUMNS = {
    "sid": Column("<u4"),
    "first_ns": Column("<i8", I64_MAX),
    "last_ns": Column("<i8", I64_MIN),
    "packets": Column("<u4"),
    "bytes": Column("<u8"),
    "spoof_packets": Column("<u4"),
    "distinct": Column("<u4"),
    "dst0": Column("<u4"),
    "dst1": Column("<u4"),
    "ports": Column("<u2"),
    "main_port": Column("<u4"),  # protocol << 16 | port (ICMP: type)
    "hop_min": Column("u1", 255),
    "hop_max": Column("u1", 0),
    "sport_min": Column("<u2", 0xFFFF),  # TCP/UDP source ports of counted probes:
    "sport_max": Column("<u2", 0),  # one port (masscan, nmap) is reported as source.port
    "ttl_min": Column("u1", 255),
    "ttl_max": Column("u1", 0),
    "reasons": Column("<u2"),
    "tool_n": Column("u1"),  # sampled probes seen (the first 255 decide)
    **{f"tool_t{j}": Column("u1") for j in range(_NT)},  # of those, tested for tool j
    **{f"tool_m{j}": Column("u1") for j in range(_NT)},  # of those, matching tool j
    "uni_ref": Column("<u4"),
    "flags": Column("u1"),  # F_* bits below
    "revision": Column("<u2"),  # saturates at 65535 (455 days of 10-minute revisions)
    "emit_s": Column("<u4"),  # event time of the last revision, whole seconds
}
PORT_COLUMNS = {"pid": Column("<u4"), "packets": Column("<u4"), "distinct": Column("<u4")}
V6_COLUMNS = {"hi": Column("<u8"), "lo": Column("<u8")}


class ScanDetector:
    name = "scan"

    def __init__(self, th: Thresholds) -> None:
        self.th = th
        self.src = Table(SOURCE_COLUMNS)
        self.v6 = Table(V6_COLUMNS)
        self.ports = Table(PORT_COLUMNS)
        self.dst_pairs = KeyIndex(with_rows=False)
        self.hll = HllRows()  # sources past scan_exact_cap destinations
        self.port_pairs = KeyIndex(with_rows=False)
        self.next_sid = 1
        self.next_pid = 1
        self.evicted_total = 0
        self.expired_total = 0
        #: decoy groups (Nmap -D): group id -> source keys seen sending identical probes
        self.decoy_groups: dict[int, set[int]] = {}
        self._decoy_of: dict[int, int] = {}  # source key -> group id

    # -- tools ---------------------------------------------------------------
    def tool_of(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Index into TOOLS of the tool every tested sampled probe matches, or -1."""
        c = self.src.cols
        t = np.stack([c[f"tool_t{j}"][rows] for j in range(_NT)], axis=1).astype(np.int64)
        m = np.stack([c[f"tool_m{j}"][rows] for j in range(_NT)], axis=1).astype(np.int64)
        ok = (t >= self.th.tool_min_samples) & (m == t)
        return np.where(ok.any(axis=1), ok.argmax(axis=1), -1)

    def _absorb_samples(self, samples: npt.NDArray[np.void]) -> None:
        if samples.shape[0] == 0:
            return
        skey, _ = addr_key(samples["src_ip"])
        srow = self.src.lookup(skey)
        ok = srow >= 0
        if not ok.any():
            return
        # gather fields, never whole records (see Fields)
        s = Fields(samples, np.flatnonzero(ok))
        g = group(srow[ok].astype(np.uint64), stable=True)
        rows = g.keys.astype(np.int64)
        c = self.src.cols
        tested = tools_tested(s)
        match = tool_matches(s)
        self._find_decoys(s, c["key"][srow[ok]])
        # Unicornscan: the probes must share one constant; the reference is the
        # source's first candidate probe ever seen (kept in uni_ref)
        val = unicorn_value(s)
        cand = is_syn(s)
        has_ref = (c["flags"][rows] & F_UNI_SET) != 0
        first_val = g.first(np.where(cand, val, 0).astype(np.uint32))
        first_cand = g.first(cand)
        ref = np.where(has_ref, c["uni_ref"][rows], first_val)
        match[:, _UNI] = cand & (val == ref[g.inv])
        newref = ~has_ref & first_cand
        c["uni_ref"][rows[newref]] = first_val[newref]
        c["flags"][rows[newref]] |= np.uint8(F_UNI_SET)
        # the first SAMPLES_TESTED probes decide: past that the counts freeze, so
        # "all of them match" stays exact in one byte per tool
        n_old = c["tool_n"][rows].astype(np.int64)
        open_ = n_old + np.diff(np.r_[g.starts, len(s)]) <= SAMPLES_TESTED
        rows_o = rows[open_]
        c["tool_n"][rows_o] = (n_old[open_] + np.diff(np.r_[g.starts, len(s)])[open_]).astype(np.uint8)
        for j in range(_NT):
            for name, hits in ((f"tool_t{j}", tested[:, j]), (f"tool_m{j}", match[:, j])):
                col = c[name]
                added = g.sum(hits.astype(np.int64))[open_]
                col[rows_o] = (col[rows_o].astype(np.int64) + added).astype(np.uint8)

    def _find_decoys(self, s: Fields, skeys: npt.NDArray[np.uint64]) -> None:
        """Sources that sent the very same probe (destination, ports, seq, IP ID): decoys.

        ``nmap -D`` sends each probe once from the real address and once from
        every decoy; without the target's replies (a darknet never answers) the
        real one cannot be told apart, so the group is reported as a group.
        """
        d = dst32(s["dst_ip"])
        ports = (s["dst_port"].astype(np.uint64) << np.uint64(16)) | s["src_port"].astype(np.uint64)
        ident = s["tcp_seq"].astype(np.uint64) | (s["ip_id"].astype(np.uint64) << _U32)
        probe = mix64(mix64(d | (ports << _U32)) ^ ident)
        # one sort by probe; only probes seen more than once are looked at closer
        by_probe = group(probe)
        counts = np.diff(np.r_[by_probe.starts, probe.shape[0]])
        multi = counts >= 2
        if not multi.any():
            return
        keep = multi[by_probe.inv]
        probe, skeys = probe[keep], skeys[keep]
        pg = group(mix64(probe ^ mix64(skeys)))  # unique (probe, source)
        first = pg.order[pg.starts]
        per_probe = group(probe[first])
        sizes = np.diff(np.r_[per_probe.starts, first.shape[0]])
        # nmap takes at most 128 decoys; a probe shared by more sources is a flood
        # with a constant header (hping), not a decoy scan
        shared = np.flatnonzero((sizes >= 2) & (sizes <= DECOY_MAX_GROUP))
        for gi in shared[:DECOY_MAX_NEW_PER_BATCH].tolist():
            lo = per_probe.starts[gi]
            members = {int(k) for k in skeys[first[per_probe.order[lo : lo + sizes[gi]]]].tolist()}
            gids = {self._decoy_of[k] for k in members if k in self._decoy_of}
            gid = min(gids) if gids else min(members)
            for other in gids - {gid}:
                members |= self.decoy_groups.pop(other)
            members |= self.decoy_groups.get(gid, set())
            self.decoy_groups[gid] = members
            for k in members:
                self._decoy_of[k] = gid

    # -- per batch -------------------------------------------------------------
    def prepare(self, view: BatchView) -> None:
        """Before a batch is processed in chunks: create its sources, absorb its samples.

        Tool proof must be known before any chunk's flows are tagged (ZMap's TTL
        255 is no spoofing), so the samples go first, for all sources at once.
        """
        idx = self._candidates(view)
        if idx.size:
            g = group(view.src_key[idx])
            self._upsert_sources(g.keys, view.flows["src_ip"][idx[g.order[g.starts]]])
        self._absorb_samples(view.batch.samples)

    @staticmethod
    def _candidates(view: BatchView) -> npt.NDArray[np.int64]:
        return np.flatnonzero(~view.backscatter & ((view.reasons & (sr.BOGON | sr.DARK)) == 0))

    def _upsert_sources(
        self, keys: npt.NDArray[np.uint64], addrs: npt.NDArray[np.void]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        rows, new = self.src.upsert(keys)
        n_new = int(new.sum())
        if n_new:
            sids = np.arange(self.next_sid, self.next_sid + n_new) & 0xFFFF_FFFF
            self.src.cols["sid"][rows[new]] = sids.astype(np.uint32)
            self.next_sid += n_new
            v6new = new & (keys >= np.uint64(1 << 63))
            if v6new.any():
                hi, lo = addr_halves(addrs[v6new])
                vr, _ = self.v6.upsert(keys[v6new])
                self.v6.cols["hi"][vr] = hi
                self.v6.cols["lo"][vr] = lo
        return rows, new

    def process(self, view: BatchView) -> None:
        idx = self._candidates(view)
        if idx.size == 0:
            return
        f = Fields(view.flows, idx)
        g = group(view.src_key[idx])
        rows, _ = self._upsert_sources(g.keys, f["src_ip"][g.order[g.starts]])
        c = self.src.cols
        self._absorb_samples(view.batch.samples)
        tool = self.tool_of(rows)
        reasons = sr.flow_reasons(
            f, view.src_key[idx], view.src_is4[idx], view.same_addr[idx], (tool >= 0)[g.inv]
        )
        pk = view.packets[idx]
        flagged = reasons != 0
        good = ~flagged
        hops = sr.hop_count(f["ttl"])
        c["hop_min"][rows] = np.minimum(c["hop_min"][rows], g.min(hops).astype(np.uint8))
        c["hop_max"][rows] = np.maximum(c["hop_max"][rows], g.max(hops).astype(np.uint8))
        c["ttl_min"][rows] = np.minimum(c["ttl_min"][rows], g.min(f["ttl"]))
        ported = good & ((f["protocol"] == 6) | (f["protocol"] == 17))
        sport = f["src_port"]
        c["sport_min"][rows] = np.minimum(c["sport_min"][rows], g.min(np.where(ported, sport, 0xFFFF)))
        c["sport_max"][rows] = np.maximum(c["sport_max"][rows], g.max(np.where(ported, sport, 0)))
        c["ttl_max"][rows] = np.maximum(c["ttl_max"][rows], g.max(f["ttl"]))
        c["first_ns"][rows] = np.minimum(c["first_ns"][rows], g.min(f["first_ns"]))
        c["last_ns"][rows] = np.maximum(c["last_ns"][rows], g.max(f["last_ns"]))
        gpk = g.sum(np.where(good, pk, 0))
        spk = g.sum(np.where(flagged, pk, 0))
        old_packets = c["packets"][rows].copy()
        old_distinct = c["distinct"][rows].copy()
        c["packets"][rows] = np.minimum(old_packets + gpk, 0xFFFF_FFFF).astype(np.uint32)
        c["flags"][rows[gpk > 0]] |= np.uint8(F_TOUCHED | F_PENDING)
        c["spoof_packets"][rows] = np.minimum(c["spoof_packets"][rows] + spk, 0xFFFF_FFFF).astype(np.uint32)
        c["bytes"][rows] += g.sum(np.where(good, pk * f["ip_len"].astype(np.uint64), 0))
        c["reasons"][rows] |= np.bitwise_or.reduceat(reasons[g.order], g.starts).astype(np.uint16)

        gi = g.inv[good]
        if gi.size:
            self._count_destinations(rows, gi, view.dst32[idx][good])
            self._count_ports(
                rows, gi, f.select(good), view.dst32[idx][good], pk[good], old_packets, old_distinct
            )

        # TTL inconsistency needs history, so it is judged here, after the update
        total = c["packets"][rows].astype(np.int64) + c["spoof_packets"][rows]
        spread = c["hop_max"][rows].astype(np.int16) - c["hop_min"][rows].astype(np.int16)
        # Nmap draws every probe's TTL from 37-59 whatever the protocol: a spread that
        # fits that window (seen below 60, at most 22 wide) is the tool, not spoofing
        nmap_ttl = sr.nmap_ttl_window(c["ttl_min"][rows], c["ttl_max"][rows])
        ttl_bad = (
            (spread > self.th.spoof_hop_spread)
            & (total >= self.th.spoof_hop_min_packets)
            & (tool < 0)
            & ~nmap_ttl
        )
        c["reasons"][rows[ttl_bad]] |= np.uint16(sr.TTL_INCONSISTENT)
        reasons |= np.where(ttl_bad[g.inv], sr.TTL_INCONSISTENT, 0).astype(np.uint16)
        view.reasons[idx] |= reasons

    def _count_destinations(
        self, rows: npt.NDArray[np.int64], gi: npt.NDArray[np.int64], dst: npt.NDArray[np.uint64]
    ) -> None:
        c = self.src.cols
        pg = group((gi.astype(np.uint64) << _U32) | dst)
        pgid = (pg.keys >> _U32).astype(np.int64)
        pdst = pg.keys & np.uint64(0xFFFF_FFFF)
        prow = rows[pgid]
        lead = np.r_[True, pgid[1:] != pgid[:-1]]
        empty = c["distinct"][prow] == 0
        set0 = lead & empty
        c["dst0"][prow[set0]] = pdst[set0].astype(np.uint32)
        c["distinct"][prow[set0]] = 1
        other = pdst != c["dst0"][prow]
        # the second destination also lives in the row (most sources stop at two)
        if other.any():
            o_idx = np.flatnonzero(other)
            o_gid = pgid[o_idx]
            o_lead = np.r_[True, o_gid[1:] != o_gid[:-1]]
            set1 = o_idx[o_lead & (c["distinct"][prow[o_idx]] == 1)]
            c["dst1"][prow[set1]] = pdst[set1].astype(np.uint32)
            c["distinct"][prow[set1]] = 2
            other[set1] = False
            other &= pdst != c["dst1"][prow]
        cap = self.th.scan_exact_cap
        capped = c["distinct"][prow] >= cap
        exact = other & ~capped
        if exact.any():
            keys = (c["sid"][prow[exact]].astype(np.uint64) << _U32) | pdst[exact]
            fresh = self.dst_pairs.add(keys)
            add = np.bincount(pgid[exact][fresh], minlength=rows.shape[0])
            c["distinct"][rows] = np.minimum(c["distinct"][rows].astype(np.int64) + add, 0xFFFF_FFFF).astype(
                np.uint32
            )
        sketched = other & capped
        if sketched.any():
            self.hll.add(c["sid"][prow[sketched]].astype(np.uint64), pdst[sketched])
        # sources that reached the cap in this batch move to a HyperLogLog row, seeded
        # with every destination they had (a scan of the pair set: rare)
        over = rows[c["distinct"][rows] >= cap]
        if over.size:
            sids = c["sid"][over].astype(np.uint64)
            fresh_over = np.array([sid not in self.hll for sid in sids.tolist()], dtype=bool)
            if fresh_over.any():
                new_sids = np.sort(sids[fresh_over])
                k = self.dst_pairs.keys()
                mine = k[_member(k >> _U32, new_sids)]
                self.hll.add(mine >> _U32, mine & np.uint64(0xFFFF_FFFF))
                inline = over[fresh_over]
                self.hll.add(
                    np.r_[sids[fresh_over], sids[fresh_over]],
                    np.r_[c["dst0"][inline], c["dst1"][inline]].astype(np.uint64),
                )
            for r, sid in zip(over.tolist(), sids.tolist(), strict=True):
                c["distinct"][r] = min(max(cap, self.hll.estimate(sid)), 0xFFFF_FFFF)

    def _count_ports(
        self,
        rows: npt.NDArray[np.int64],
        gi: npt.NDArray[np.int64],
        f: Fields,
        dst: npt.NDArray[np.uint64],
        pk: npt.NDArray[np.uint64],
        old_packets: npt.NDArray[np.uint32],
        old_distinct: npt.NDArray[np.uint32],
    ) -> None:
        c = self.src.cols
        proto = f["protocol"].astype(np.uint64)
        icmp = (proto == 1) | (proto == 58)
        port = np.where(icmp, f["src_port"], f["dst_port"]).astype(np.uint64)
        pkey = (proto << np.uint64(16)) | port
        tg = group((gi.astype(np.uint64) << _U32) | pkey)  # (batch source, port)
        tgid = (tg.keys >> _U32).astype(np.int64)
        tport = tg.keys & np.uint64(0xFFFF_FFFF)
        trow = rows[tgid]
        lead = np.r_[True, tgid[1:] != tgid[:-1]]
        none_yet = c["ports"][trow] == 0
        set0 = lead & none_yet
        c["main_port"][trow[set0]] = tport[set0].astype(np.uint32)
        c["ports"][trow[set0]] = 1
        main = c["main_port"][trow].astype(np.uint64)
        # sources that use (or already used) more than one port get port-table rows
        multi_src = np.zeros(rows.shape[0], dtype=bool)
        multi_src[tgid[tport != main]] = True
        multi_src |= c["ports"][rows] > 1
        if not multi_src.any():
            return
        pc = self.ports.cols
        promote = np.flatnonzero(multi_src & (c["ports"][rows] == 1))
        if promote.size:
            # the main port's row starts with what the source did before it went multi-port
            mkeys = (c["sid"][rows[promote]].astype(np.uint64) << np.uint64(24)) | c["main_port"][
                rows[promote]
            ].astype(np.uint64)
            mrow, mnew = self.ports.upsert(mkeys)
            self._new_pids(mrow[mnew])
            pc["packets"][mrow[mnew]] = old_packets[promote[mnew]]
            pc["distinct"][mrow[mnew]] = old_distinct[promote[mnew]]
        sel = multi_src[tgid] & ((c["ports"][trow] < self.th.scan_port_cap) | (tport == main))
        keys = (c["sid"][trow[sel]].astype(np.uint64) << np.uint64(24)) | tport[sel]
        prow, pnew = self.ports.upsert(keys)
        self._new_pids(prow[pnew])
        sgid = tgid[sel]
        pc["packets"][prow] += tg.sum(pk)[sel].astype(np.uint32)
        new_ports = np.bincount(sgid[pnew & (tport[sel] != main[sel])], minlength=rows.shape[0])
        c["ports"][rows] = np.minimum(c["ports"][rows].astype(np.int64) + new_ports, 0xFFFF).astype(np.uint16)
        # per-port distinct destinations
        port_row_of_pair = np.full(tg.keys.shape[0], -1, dtype=np.int64)
        port_row_of_pair[np.flatnonzero(sel)] = prow
        flow_prow = port_row_of_pair[tg.inv]
        tracked = flow_prow >= 0
        # per-port counts stay exact up to the cap, a lower bound beyond (the source's own
        # count goes on in its sketch)
        tracked[tracked] = pc["distinct"][flow_prow[tracked]] < self.th.scan_exact_cap
        if tracked.any():
            pid = pc["pid"][flow_prow[tracked]].astype(np.uint64)
            dg = group((pid << _U32) | dst[tracked])
            fresh = self.port_pairs.add(dg.keys)
            owner = flow_prow[tracked][dg.order[dg.starts]]
            add = np.bincount(owner[fresh], minlength=self.ports.size)
            hit = np.flatnonzero(add)
            pc["distinct"][hit] += add[hit].astype(np.uint32)

    def _new_pids(self, prows: npt.NDArray[np.int64]) -> None:
        n = prows.shape[0]
        if n:
            pids = np.arange(self.next_pid, self.next_pid + n) & 0xFFFF_FFFF
            self.ports.cols["pid"][prows] = pids.astype(np.uint32)
            self.next_pid += n

    # -- judgement and emission -------------------------------------------------
    def judged_spoofed(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        c = self.src.cols
        pk = c["packets"][rows].astype(np.float64)
        spk = c["spoof_packets"][rows].astype(np.float64)
        src_level = (c["reasons"][rows] & (sr.BOGON | sr.DARK | sr.TTL_INCONSISTENT)) != 0
        majority = (spk > 0) & (spk >= self.th.spoof_packet_fraction * (pk + spk))
        return np.asarray(src_level | majority)

    def qualifies(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        c = self.src.cols
        th = self.th
        pk = c["packets"][rows].astype(np.float64)
        dur = np.maximum((c["last_ns"][rows] - c["first_ns"][rows]).astype(np.float64) / 1e9, 1.0)
        rate = pk / dur * th.extrapolation
        horiz = (c["distinct"][rows] >= th.scan_min_destinations) & (rate >= th.scan_min_rate_pps)
        vert = c["ports"][rows] >= th.scan_min_ports
        return np.asarray((pk > 0) & (horiz | vert) & ~self.judged_spoofed(rows))

    def kind_of(self, distinct: int, ports: int, host_ports: int) -> str:
        """bro-simple-scan's kinds; ``host_ports``: sum over ports of their distinct hosts.

        A few ports where each host gets one of them (Mirai: 23, one probe in ten
        2323) is a horizontal scan; strobe means hosts are probed on several of
        the ports (on average at least STROBE_PORTS_PER_HOST).
        """
        th = self.th
        if ports >= th.scan_min_ports and distinct <= th.scan_vertical_max_hosts:
            return "vertical"
        if ports <= 1:
            return "horizontal"
        if ports <= th.scan_strobe_max_ports:
            return "strobe" if host_ports >= STROBE_PORTS_PER_HOST * max(distinct, 1) else "horizontal"
        return "random"

    def end_interval(self, now_ns: int, ctx: Context, force: bool = False) -> list[dict[str, Any]]:
        size = self.src.size
        if size == 0:
            return []
        c = self.src.cols
        flags = c["flags"][:size]
        expired = c["last_ns"][:size] < now_ns - self.th.scan_idle_ns
        reported = c["revision"][:size] > 0
        # only rows that got packets this interval, or reported rows that grew or
        # end, can emit: judge just those (full-table temporaries would cost more
        # than the table itself); an unreported row that did not qualify when it
        # last got packets cannot qualify later without new ones
        cand = np.flatnonzero(
            ((flags & F_TOUCHED) != 0) | (reported & (((flags & F_PENDING) != 0) | expired))
        )
        ok = self.qualifies(cand)
        rev = c["revision"][cand]
        ch = (flags[cand] & F_PENDING) != 0
        ex = expired[cand]
        since = now_ns // 1_000_000_000 - c["emit_s"][cand].astype(np.int64)
        due = ok & ch & ((rev == 0) | (since * 1_000_000_000 >= self.th.revision_interval_ns) | force)
        final = ex & ok & (ch | (rev > 0))  # the closing revision says "ended"
        emit = cand[due | final]
        events = self._events(emit, now_ns, expired, ctx) if emit.size else []
        c["revision"][emit] = np.minimum(c["revision"][emit].astype(np.int64) + 1, 0xFFFF).astype(np.uint16)
        c["emit_s"][emit] = now_ns // 1_000_000_000
        c["flags"][emit] &= np.uint8(~F_PENDING & 0xFF)
        flags &= np.uint8(~F_TOUCHED & 0xFF)
        keep = ~expired
        self.expired_total += int(expired.sum())
        over = int(keep.sum()) - self.th.max_sources
        if over > 0:
            keep = self._evict(keep, over + self.th.max_sources // 10)
        if not keep.all():
            self._compact(keep)
        return events

    def _evict(self, keep: npt.NDArray[np.bool_], count: int) -> npt.NDArray[np.bool_]:
        c = self.src.cols
        size = self.src.size
        cand = np.flatnonzero(keep & (c["revision"][:size] == 0))
        count = min(count, cand.size)
        if count <= 0:
            return keep
        # spoofed sources first, then the fewest packets, then the longest idle
        spoofed = self.judged_spoofed(cand)
        order = np.lexsort(
            (c["last_ns"][cand], c["packets"][cand].astype(np.int64) + c["spoof_packets"][cand], ~spoofed)
        )
        victims = cand[order[:count]]
        keep = keep.copy()
        keep[victims] = False
        self.evicted_total += count
        return keep

    def _compact(self, keep: npt.NDArray[np.bool_]) -> None:
        size = self.src.size
        gone_keys = self.src.cols["key"][:size][~keep]
        self.src.compact(keep)
        v6gone = gone_keys[gone_keys >= np.uint64(1 << 63)]
        if v6gone.size and self.v6.size:
            self.v6.compact(~np.isin(self.v6.cols["key"][: self.v6.size], v6gone))
        if self.decoy_groups:
            keys = np.array(sorted(self._decoy_of), dtype=np.uint64)
            for k in keys[self.src.lookup(keys) < 0].tolist():
                gid = self._decoy_of.pop(k)
                self.decoy_groups[gid].discard(k)
                if not self.decoy_groups[gid]:
                    del self.decoy_groups[gid]
        live = np.sort(self.src.cols["sid"][: self.src.size].astype(np.uint64))
        if len(self.hll):
            self.hll.retain(set(live.tolist()))
        if len(self.dst_pairs):
            k = self.dst_pairs.keys()
            exact_live = live
            if len(self.hll):  # sketched sources no longer need their pairs
                exact_live = np.setdiff1d(live, np.array(self.hll.owners(), dtype=np.uint64))
            self.dst_pairs.rebuild(k[_member(k >> _U32, exact_live)])
        if self.ports.size:
            pk = self.ports.cols["key"][: self.ports.size]
            self.ports.compact(_member(pk >> np.uint64(24), live))
            live_p = np.sort(self.ports.cols["pid"][: self.ports.size].astype(np.uint64))
            k = self.port_pairs.keys()
            self.port_pairs.rebuild(k[_member(k >> _U32, live_p)])

    def _address(self, key: int) -> str:
        if key < (1 << 32):
            return f"{key >> 24}.{(key >> 16) & 255}.{(key >> 8) & 255}.{key & 255}"
        import ipaddress

        r = int(self.v6.lookup(np.array([key], dtype=np.uint64))[0])
        hi, lo = int(self.v6.cols["hi"][r]), int(self.v6.cols["lo"][r])
        return str(ipaddress.IPv6Address((hi << 64) | lo))

    def _port_breakdown(self, rows: npt.NDArray[np.int64]) -> dict[int, list[tuple[int, int, int]]]:
        """Per multi-port source row: [(port key, packets, distinct)] by packets."""
        c = self.src.cols
        multi = rows[c["ports"][rows] > 1]
        out: dict[int, list[tuple[int, int, int]]] = {}
        if multi.size == 0 or self.ports.size == 0:
            return out
        pc = self.ports.cols
        psid = pc["key"][: self.ports.size] >> np.uint64(24)
        sids = c["sid"][multi].astype(np.uint64)
        hit = np.flatnonzero(np.isin(psid, sids))
        row_of_sid = dict(zip(sids.tolist(), multi.tolist(), strict=True))
        for i in hit.tolist():
            r = row_of_sid[int(psid[i])]
            out.setdefault(r, []).append(
                (int(pc["key"][i]) & 0xFFFFFF, int(pc["packets"][i]), int(pc["distinct"][i]))
            )
        for lst in out.values():
            lst.sort(key=lambda t: (-t[1], t[0]))
        return out

    def _events(
        self, emit: npt.NDArray[np.int64], now_ns: int, expired: npt.NDArray[np.bool_], ctx: Context
    ) -> list[dict[str, Any]]:
        c = self.src.cols
        th = self.th
        tools = self.tool_of(emit)
        breakdown = self._port_breakdown(emit)
        addrs = [self._address(int(k)) for k in c["key"][emit].tolist()]
        known = ctx.known.names(_addr_array(addrs))
        events = []
        for i, r in enumerate(emit.tolist()):
            first, last = int(c["first_ns"][r]), int(c["last_ns"][r])
            packets, distinct, ports = int(c["packets"][r]), int(c["distinct"][r]), int(c["ports"][r])
            is6 = int(c["key"][r]) >= 1 << 63
            top = breakdown.get(r) or [(int(c["main_port"][r]), packets, distinct)]
            main = top[0][0]
            kind = self.kind_of(distinct, ports, sum(d for _, _, d in top))
            t = int(tools[i])
            tool = TOOLS[t].name if t >= 0 else None
            dur = max((last - first) / 1e9, 1.0)
            ev = base_event(
                "scan",
                tool or "scan",
                addrs[i],
                first,
                last,
                now_ns,
                int(c["revision"][r]) + 1,
                ctx.feed_name,
            )
            n_samples = int(c["tool_n"][r])
            evidence = {
                fp.name: f"{int(c[f'tool_m{j}'][r])}/{int(c[f'tool_t{j}'][r])} sampled probes: {fp.rule}"
                for j, fp in enumerate(TOOLS)
                # a constant-value rule matches its own reference probe: show it from two on
                if int(c[f"tool_m{j}"][r]) > (1 if fp.constant else 0)
            }
            confidence = 0.6 + (0.3 if tool else 0.0)
            key = int(c["key"][r])
            decoys = self.decoy_groups.get(self._decoy_of.get(key, -1), set())
            if distinct >= 2 * th.scan_min_destinations or ports >= 2 * th.scan_min_ports:
                confidence += 0.1
            ev.update(
                {
                    "source.ip": addrs[i],
                    "destination.port": main & 0xFFFF,
                    "protocol.transport": proto_name(main >> 16),
                    "extra.kind": kind,
                    "extra.packets": packets,
                    "extra.bytes": int(c["bytes"][r]),
                    "extra.destinations_distinct": distinct,
                    "extra.destinations_capped": distinct >= th.scan_exact_cap,
                    "extra.ports_distinct": ports,
                    "extra.ports_capped": ports >= th.scan_port_cap,
                    "extra.ports": [
                        {"protocol": proto_name(k >> 16), "port": k & 0xFFFF, "packets": p, "destinations": d}
                        for k, p, d in top[:10]
                    ],
                    "extra.coverage": _coverage(distinct, th.n6 if is6 else th.n),
                    "extra.rate_pps_observed": round(packets / dur, 3),
                    # x 2^32/n assumes probes spread over the address space: a vertical
                    # scan aims at a few hosts, so its Internet-wide rate is unknowable
                    # IPv6 scanners work from hitlists, not the whole space: no extrapolation
                    "extra.rate_pps_estimated": (
                        None if kind == "vertical" or is6 else round(packets / dur * th.extrapolation, 1)
                    ),
                    "extra.tool": tool,
                    "extra.tool_evidence": evidence,
                    "extra.tool_samples": n_samples,
                    "extra.confidence": round(min(confidence, 1.0), 2),
                    "extra.known_scanner": known[i],
                    "extra.state": "ended" if bool(expired[r]) else "ongoing",
                }
            )
            if c["sport_min"][r] == c["sport_max"][r]:  # every probe from one source port
                ev["source.port"] = int(c["sport_min"][r])
            if decoys:
                # one of the group is the scanner, the others are forged: say so
                ev["extra.decoy_group"] = sorted(self._address(k) for k in decoys if k != key)
                ev["extra.confidence"] = round(1.0 / len(decoys), 2)
            events.append(ev)
        return events

    # -- checkpoint ----------------------------------------------------------------
    def state(self) -> tuple[dict[str, npt.NDArray], dict[str, Any]]:
        arrays = {**self.src.state("scan.src"), **self.v6.state("scan.v6"), **self.ports.state("scan.ports")}
        arrays["scan.dst_pairs"] = self.dst_pairs.keys()
        arrays["scan.port_pairs"] = self.port_pairs.keys()
        arrays["scan.hll"], hll_owners = self.hll.state()
        meta = {
            "next_sid": self.next_sid,
            "next_pid": self.next_pid,
            "evicted_total": self.evicted_total,
            "expired_total": self.expired_total,
            "decoy_groups": [[gid, sorted(m)] for gid, m in sorted(self.decoy_groups.items())],
            "hll_owners": hll_owners,
        }
        return arrays, meta

    def restore(self, arrays: dict[str, npt.NDArray], meta: dict[str, Any]) -> None:
        self.src.restore("scan.src", arrays)
        self.v6.restore("scan.v6", arrays)
        self.ports.restore("scan.ports", arrays)
        self.dst_pairs.rebuild(arrays["scan.dst_pairs"])
        self.port_pairs.rebuild(arrays["scan.port_pairs"])
        self.hll.restore(arrays["scan.hll"], meta["hll_owners"])
        self.next_sid = int(meta["next_sid"])
        self.next_pid = int(meta["next_pid"])
        self.evicted_total = int(meta["evicted_total"])
        self.expired_total = int(meta["expired_total"])
        self.decoy_groups = {int(g): {int(k) for k in m} for g, m in meta["decoy_groups"]}
        self._decoy_of = {k: g for g, m in self.decoy_groups.items() for k in m}


def _member(values: npt.NDArray[np.uint64], sorted_set: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    if sorted_set.size == 0:
        return np.zeros(values.shape[0], dtype=bool)
    i = np.clip(np.searchsorted(sorted_set, values), 0, sorted_set.size - 1)
    return np.asarray(sorted_set[i] == values)


def _addr_array(addrs: list[str]) -> npt.NDArray[np.void]:
    from darknet_iodef.addresses import parse_addr16

    return (
        np.frombuffer(b"".join(parse_addr16(a) for a in addrs), dtype="V16") if addrs else np.zeros(0, "V16")
    )


def _coverage(distinct: int, n: int) -> float | None:
    """Share of the telescope's addresses (of the source's family) hit, to 6 significant digits."""
    return float(f"{distinct / n:.6g}") if n else None
