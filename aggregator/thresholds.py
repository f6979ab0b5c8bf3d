"""Detection thresholds as functions of the telescope size n.

Theory of operation (DOMAIN.md sections 3 and 4). A telescope of n dark IPv4
addresses sees a fraction n / 2^32 of what a uniformly random sender emits.

- Backscatter (Moore et al. 2006, corsaro v2): >= 25 packets, >= 60 s,
  a peak >= 30 packets in a 60 s window sliding by 10 s, 300 s idle -- for a
  /8. Scaled linearly with n those counts fall below one packet on a /16
  (30/min on a /8 is ~128 pps at the victim; the same victim rate gives 0.12
  packets a minute on a /16), so the scaled value has a floor: 5 packets and
  3 in the window. On a /16 the floor means an attack of >= ~3,300 pps at the
  victim for a minute; smaller attacks are invisible to a /16 anyway.
  Duration (60 s) and idle timeout (300 s) are kept: at the floor rate the
  mean gap between backscatter packets is 20 s, so 300 s is 15 gaps.
- Scans (Durumeric et al. 2014): >= 100 distinct dark destinations on a /8.
  Scaled by n / 2^24 and clamped to [10, 100]: 10 is Merit's annotation
  threshold (darknet-events) and keeps a /16 or smaller telescope useful;
  100 caps larger telescopes at the paper's definition.
- Scan idle timeout: a scanner at R pps hits the telescope on average every
  2^32 / (R n) s, so the timeout is k of those gaps for the slowest rate
  R_min worth tracking, within [480 s (Durumeric), 1 day]. With k = 3 and
  R_min = 1.6 pps it is exactly 480 s on a /8; on a /16 it hits the 1-day cap.
- Extrapolation: a rate seen at the telescope times 2^32 / n estimates the
  Internet-wide scan rate and the attack rate at a backscatter victim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aggregator.settings import AggregatorSettings

__all__ = ["REF_SIZE", "Thresholds", "thresholds_for"]

#: the /8 of the reference papers
REF_SIZE = 1 << 24
#: IPv4 address space
SPACE = 1 << 32

BS_REF_PACKETS, BS_FLOOR_PACKETS = 25, 5
BS_REF_WINDOW, BS_FLOOR_WINDOW = 30, 3
SCAN_REF_DESTS, SCAN_FLOOR_DESTS, SCAN_CEIL_DESTS = 100, 10, 100


@dataclass(frozen=True, slots=True)
class Thresholds:
    n: int
    n6: int  # dark IPv6 addresses (coverage of IPv6 scans); no extrapolation from it
    extrapolation: float  # 2^32 / n
    scan_min_destinations: int
    scan_min_rate_pps: float
    scan_min_ports: int
    scan_vertical_max_hosts: int
    scan_strobe_max_ports: int
    scan_idle_ns: int
    scan_exact_cap: int
    scan_port_cap: int
    tool_min_samples: int
    spoof_hop_spread: int
    spoof_hop_min_packets: int
    spoof_packet_fraction: float
    spoof_min_packets: int
    bs_min_packets: int
    bs_min_window_packets: int
    bs_min_duration_ns: int
    bs_idle_ns: int
    revision_interval_ns: int
    max_sources: int
    max_vectors: int


def _scaled(ref: int, n: int, floor: int, ceil: int | None = None) -> int:
    v = max(floor, math.ceil(ref * n / REF_SIZE))
    return min(v, ceil) if ceil is not None else v


def thresholds_for(s: AggregatorSettings, n: int, n6: int = 0) -> Thresholds:
    """The thresholds in force for a telescope of ``n`` dark IPv4 (``n6`` IPv6) addresses.

    An IPv6-only telescope (n = 0) is treated as a /16 for scaling: IPv6 dark
    space is sparse in a way no extrapolation captures; the floors apply.
    """
    n_eff = n if n > 0 else 1 << 16
    idle_s = s.scan_idle_s or min(
        s.scan_idle_max_s,
        max(s.scan_idle_floor_s, s.scan_idle_k * SPACE / (s.scan_idle_min_rate_pps * n_eff)),
    )
    return Thresholds(
        n=n,
        n6=n6,
        extrapolation=SPACE / n_eff,
        scan_min_destinations=s.scan_min_destinations
        or _scaled(SCAN_REF_DESTS, n_eff, SCAN_FLOOR_DESTS, SCAN_CEIL_DESTS),
        scan_min_rate_pps=s.scan_min_rate_pps,
        scan_min_ports=s.scan_min_ports,
        scan_vertical_max_hosts=s.scan_vertical_max_hosts,
        scan_strobe_max_ports=s.scan_strobe_max_ports,
        scan_idle_ns=int(idle_s * 1e9),
        scan_exact_cap=s.scan_exact_cap,
        scan_port_cap=s.scan_port_cap,
        tool_min_samples=s.tool_min_samples,
        spoof_hop_spread=s.spoof_hop_spread,
        spoof_hop_min_packets=s.spoof_hop_min_packets,
        spoof_packet_fraction=s.spoof_packet_fraction,
        spoof_min_packets=s.spoof_min_packets,
        bs_min_packets=s.bs_min_packets or _scaled(BS_REF_PACKETS, n_eff, BS_FLOOR_PACKETS),
        bs_min_window_packets=s.bs_min_window_packets or _scaled(BS_REF_WINDOW, n_eff, BS_FLOOR_WINDOW),
        bs_min_duration_ns=int(s.bs_min_duration_s * 1e9),
        bs_idle_ns=int(s.bs_idle_s * 1e9),
        revision_interval_ns=int(s.revision_interval_s * 1e9),
        max_sources=s.max_sources,
        max_vectors=s.max_vectors,
    )
