"""The aggregator's options, each declared once (``[aggregator]`` in TOML).

A threshold whose default is 0 is *scaled*: the value used is derived from
the telescope size n by :mod:`aggregator.thresholds` (DOMAIN.md sections 3
and 4); any positive value given here overrides the scaled one.
"""

from __future__ import annotations

from dataclasses import dataclass

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = ["AggregatorSettings"]


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    darknet: str = setting("", "the telescope's dark prefixes, comma-separated CIDRs (IPv4 and IPv6)")
    feed_name: str = setting("darknet-iodef", "feed.name of every event")
    allow_list: str = setting("", "CSV of known research scanners (prefix,name); re-read when it changes")
    checkpoint: str = setting("", "state file (npz); restored at start, written after each input file")
    internal_sources: str = setting(
        "", "source CIDRs that are real hosts here although special-purpose (an internal darknet in 10/8)"
    )

    # scans (DOMAIN.md section 4)
    scan_min_destinations: int = setting(
        0, "distinct dark destinations that make a scan (0: 100 on a /8 scaled by n, within 10..100)"
    )
    scan_min_rate_pps: float = setting(10.0, "least estimated Internet-wide rate of a reported scan (Merit)")
    scan_min_ports: int = setting(15, "distinct ports that make a port scan (Zeek scan.zeek)")
    scan_vertical_max_hosts: int = setting(3, "a port scan of at most this many dark hosts is vertical")
    scan_strobe_max_ports: int = setting(5, "at most this many ports over many hosts is a strobe scan")
    scan_idle_s: float = setting(0.0, "scan ends after this much silence (0: k * 2^32 / (R_min * n))")
    scan_idle_k: float = setting(3.0, "k of the scaled idle timeout (mean gaps between probes seen)")
    scan_idle_min_rate_pps: float = setting(1.6, "R_min of the scaled idle timeout (480 s on a /8)")
    scan_idle_floor_s: float = setting(480.0, "the scaled idle timeout is at least this (Durumeric et al.)")
    scan_idle_max_s: float = setting(86400.0, "the scaled idle timeout is at most this")
    scan_exact_cap: int = setting(65536, "distinct destinations counted exactly per source; beyond: >= cap")
    scan_port_cap: int = setting(4096, "distinct ports tracked per source; beyond: >= cap")
    tool_min_samples: int = setting(3, "sampled probes that must all match before a tool is named")

    # spoofing (DOMAIN.md section 5)
    spoof_hop_spread: int = setting(8, "hop counts of one source spanning more than this: TTL-inconsistent")
    spoof_hop_min_packets: int = setting(4, "packets of a source before its TTL consistency is judged")
    spoof_packet_fraction: float = setting(0.5, "share of a source's packets tagged spoofed that condemns it")
    spoof_min_packets: int = setting(10, "spoofed packets per ingress link and interval worth a summary")

    # backscatter (DOMAIN.md section 3)
    bs_min_packets: int = setting(0, "packets of an attack vector (0: 25 on a /8 scaled by n, at least 5)")
    bs_min_window_packets: int = setting(
        0, "peak packets in a 60 s window sliding by 10 s (0: 30 on a /8 scaled by n, at least 3)"
    )
    bs_min_duration_s: float = setting(60.0, "least duration of an attack vector (Moore et al.)")
    bs_idle_s: float = setting(300.0, "an attack vector ends after this much silence (Moore et al.)")

    # state and output
    max_sources: int = setting(
        12_000_000, "per-source state cap; beyond it the least useful sources go first"
    )
    max_vectors: int = setting(2_000_000, "backscatter vector cap")
    revision_interval_s: float = setting(600.0, "least event time between two revisions of one ongoing event")

    def __post_init__(self) -> None:
        for name in (
            "scan_min_ports",
            "scan_vertical_max_hosts",
            "scan_strobe_max_ports",
            "tool_min_samples",
            "scan_exact_cap",
            "scan_port_cap",
            "spoof_hop_min_packets",
            "max_sources",
            "max_vectors",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"[aggregator] {name}", "must be at least 1")
        for name in (
            "scan_min_destinations",
            "bs_min_packets",
            "bs_min_window_packets",
            "spoof_min_packets",
            "spoof_hop_spread",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"[aggregator] {name}", "must not be negative")
        for name in ("scan_min_rate_pps", "scan_idle_s", "bs_min_duration_s", "revision_interval_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[aggregator] {name}", "must not be negative")
        for name in (
            "scan_idle_k",
            "scan_idle_min_rate_pps",
            "scan_idle_floor_s",
            "scan_idle_max_s",
            "bs_idle_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[aggregator] {name}", "must be positive")
        if self.scan_port_cap > 65535:
            raise ConfigError("[aggregator] scan_port_cap", "at most 65535 (there are no more ports)")
        if not 0 < self.spoof_packet_fraction <= 1:
            raise ConfigError("[aggregator] spoof_packet_fraction", "must be in (0, 1]")
