"""Labels: what was planted, computed back from the rows actually written.

Theory of operation: the entity descriptions say what each planted thing *is*
(tool, scan kind, response, spoofing reason); the figures -- packets, time
range, distinct destinations, per-port counts, backscatter peak rate and the
threshold verdict -- are computed here from the final, time-sorted rows, after
timestamps were truncated to the file's resolution. So the labels describe the
file exactly, whatever the scenario intended.

Backscatter verdict (Moore et al. 2006 as corsaro v2 applies it, DOMAIN.md
section 3): a (victim, protocol) vector is expected to be reported when it has
>= 25 packets, lasts >= 60 s, and has >= 30 packets in some 60 s window; the
windows slide in 10 s steps aligned to the epoch. ``peak_60s_any`` is the
maximum over windows starting anywhere; designed victims pass or fail by such
margins that both give the same verdict. No planted vector has a gap of 300 s
(the idle timeout), so none is split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from bench.gen.wire import L4_ARP, L4_TCP, L4_UDP, take_rows

__all__ = ["BACKSCATTER_RULE", "SCAN_MIN_DSTS", "entity_figures", "summary_counts"]

BACKSCATTER_RULE = {
    "min_packets": 25,
    "min_duration_s": 60,
    "min_peak_packets": 30,
    "window_s": 60,
    "window_step_s": 10,
    "idle_timeout_s": 300,
}
#: Durumeric et al. 2014: a scan reaches >= 100 distinct dark addresses on one port
SCAN_MIN_DSTS = 100
_NS = 1_000_000_000


def _dst_keys(rows: npt.NDArray[np.void]) -> npt.NDArray[Any]:
    """One comparable key per destination address (IPv4 as uint32, IPv6 as bytes)."""
    if len(rows) and rows["ipver"][0] == 6:
        return np.ascontiguousarray(rows["dst6"]).view("V16").reshape(-1)
    return rows["dst4"]


def _src_keys(rows: npt.NDArray[np.void]) -> npt.NDArray[Any]:
    if len(rows) and rows["ipver"][0] == 6:
        return np.ascontiguousarray(rows["src6"]).view("V16").reshape(-1)
    return rows["src4"]


def peak_stepped(ts: npt.NDArray[np.int64]) -> int:
    """Max packets in a 60 s window, windows starting every 10 s (epoch-aligned)."""
    step, width = 10 * _NS, 6
    b = ts // step
    b0 = int(b.min())
    counts = np.bincount((b - b0).astype(np.int64))
    return int(np.convolve(counts, np.ones(width, dtype=np.int64), mode="full").max())


def peak_any(ts: npt.NDArray[np.int64]) -> int:
    """Max packets in any 60 s window [t, t + 60 s) starting at a packet."""
    end = np.searchsorted(ts, ts + 60 * _NS, side="left")
    return int((end - np.arange(len(ts))).max())


def _time(rows: npt.NDArray[np.void]) -> dict[str, Any]:
    ts = rows["ts_ns"]
    return {
        "packets": len(rows),
        "first_ts_ns": int(ts[0]),
        "last_ts_ns": int(ts[-1]),
        "duration_s": round((int(ts[-1]) - int(ts[0])) / _NS, 6),
    }


def _scanner(rows: npt.NDArray[np.void]) -> dict[str, Any]:
    dst = _dst_keys(rows)
    ports: dict[str, dict[str, int]] = {}
    dport = rows["dport"]
    for port in np.unique(dport):
        sel = dport == port
        ports[str(int(port))] = {"packets": int(sel.sum()), "distinct_dsts": len(np.unique(dst[sel]))}
    best = max(v["distinct_dsts"] for v in ports.values())
    _, inv = np.unique(dst, return_inverse=True)
    pairs = np.unique(inv.astype(np.int64) * 65536 + dport)
    ports_per_dst = int(np.bincount(pairs // 65536).max())
    return {
        "distinct_dsts": len(np.unique(dst)),
        "distinct_ports": len(ports),
        "max_distinct_dsts_per_port": best,
        "max_distinct_ports_per_dst": ports_per_dst,
        "expected_scan_100_dsts": best >= SCAN_MIN_DSTS,
        # per destination port; left out (null) for vertical and random scans of many ports
        "ports": ports if len(ports) <= 10 else None,
    }


def _backscatter(rows: npt.NDArray[np.void]) -> dict[str, Any]:
    ts = rows["ts_ns"]
    n = len(ts)
    dur = (int(ts[-1]) - int(ts[0])) / _NS
    peak = peak_stepped(ts)
    fails = []
    if n < BACKSCATTER_RULE["min_packets"]:
        fails.append("packets")
    if dur < BACKSCATTER_RULE["min_duration_s"]:
        fails.append("duration")
    if peak < BACKSCATTER_RULE["min_peak_packets"]:
        fails.append("peak")
    dst = rows["dst4"]
    out: dict[str, Any] = {
        "distinct_dsts": len(np.unique(_dst_keys(rows))),
        "peak_60s": peak,
        "peak_60s_any": peak_any(ts),
        "max_gap_s": round(float(np.diff(ts).max()) / _NS, 6) if n > 1 else 0.0,
        "expected_pass": not fails,
        "fails": fails,
    }
    if rows["ipver"][0] == 4:
        out["dark_slash16s"] = len(np.unique(dst >> 16))
    return out


def _spoofed(rows: npt.NDArray[np.void]) -> dict[str, Any]:
    src = _src_keys(rows)
    _, per = np.unique(src, return_counts=True)
    return {
        "distinct_srcs": len(per),
        "srcs_seen_once": int((per == 1).sum()),
        "max_packets_per_src": int(per.max()),
        "distinct_ttls": len(np.unique(rows["ttl"])),
        "distinct_dsts": len(np.unique(_dst_keys(rows))),
    }


def _background(rows: npt.NDArray[np.void]) -> dict[str, Any]:
    src = _src_keys(rows)
    dst = _dst_keys(rows)
    order = np.lexsort((dst, src)) if rows["ipver"][0] == 4 else np.argsort(src, kind="stable")
    s, d = src[order], dst[order]
    new_src = np.ones(len(s), dtype=bool)
    new_src[1:] = s[1:] != s[:-1]
    new_pair = new_src.copy()
    new_pair[1:] |= d[1:] != d[:-1]
    src_idx = np.cumsum(new_src) - 1
    per_src = np.bincount(src_idx)
    dsts_per_src = np.bincount(src_idx, weights=new_pair).astype(np.int64)
    l4 = rows["l4"]
    return {
        "distinct_srcs": int(new_src.sum()),
        "max_packets_per_src": int(per_src.max()),
        "max_distinct_dsts_per_src": int(dsts_per_src.max()),
        "by_transport": {
            "tcp": int((l4 == L4_TCP).sum()),
            "udp": int((l4 == L4_UDP).sum()),
            "icmp": int(((l4 != L4_TCP) & (l4 != L4_UDP)).sum()),
        },
    }


def entity_figures(rows: npt.NDArray[np.void], entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entity's description plus the figures measured on its rows."""
    order = np.argsort(rows["entity"], kind="stable")
    by_entity = take_rows(rows, order)
    ent = by_entity["entity"]
    bounds = np.searchsorted(ent, np.arange(len(entities) + 1))
    out = []
    for i, meta in enumerate(entities):
        r = by_entity[bounds[i] : bounds[i + 1]]
        fig = _time(r)
        role = meta["role"]
        if role == "scanner":
            fig.update(_scanner(r))
        elif role == "backscatter":
            fig.update(_backscatter(r))
        elif role == "spoofed":
            fig.update(_spoofed(r))
        elif role == "background" and meta.get("kind") != "fragments":
            fig.update(_background(r))
        elif meta.get("kind") == "fragments":
            fig.update(
                {
                    "fragments": int(((r["frag"] & 0x3FFF) != 0).sum()),
                    "distinct_dsts": len(np.unique(r["dst4"])),
                }
            )
        out.append({**meta, **fig})
    return out


def summary_counts(rows: npt.NDArray[np.void], entities: list[dict[str, Any]]) -> dict[str, Any]:
    """Whole-file counts: per role, IP version, VLAN tags, fragments, non-IP frames."""
    roles = np.array([e["role"] for e in entities])
    per_entity = np.bincount(rows["entity"], minlength=len(entities))
    by_role = {str(r): int(per_entity[roles == r].sum()) for r in sorted(set(roles.tolist()))}
    l4 = rows["l4"]
    return {
        "packets": len(rows),
        "entities": len(entities),
        "by_role": by_role,
        "scanners": int((roles == "scanner").sum()),
        "victim_vectors": int((roles == "backscatter").sum()),
        "ipv4": int((rows["ipver"] == 4).sum()),
        "ipv6": int((rows["ipver"] == 6).sum()),
        "non_ip": int((l4 == L4_ARP).sum()),
        "vlan_tagged": int((rows["tags"] > 0).sum()),
        "vlan_stacked": int((rows["tags"] > 1).sum()),
        "ip_fragments": int(((rows["ipver"] == 4) & ((rows["frag"] & 0x3FFF) != 0)).sum()),
        "ipv6_ext_headers": int(((rows["ipver"] == 6) & (rows["ext6"] != 0)).sum()),
    }
