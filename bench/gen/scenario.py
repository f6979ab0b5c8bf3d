"""Scenarios: which entities are planted, how big, and what fills the rest.

Theory of operation: a scenario plants a fixed cast -- tool-shaped scanners
of every scan kind, UDP service scanners, an IPv6 scanner, backscatter of DoS
victims (most well above the Moore et al. thresholds of DOMAIN.md section 3,
three designed to fail one threshold each), spoofed floods, fragments, ARP and
packets just outside the dark space -- sized so that every planted scanner
reaches >= 100 distinct dark addresses on one port (Durumeric et al., DOMAIN.md
section 4) or, for vertical scans, hundreds of ports of one host. Whatever the
requested packet count leaves over is *filler*: bulk horizontal scanners (also
labelled one by one) and background radiation, single probes from many
sources that stay far below every scan threshold (1-3 packets per source).

``sample`` is the small capture committed in pcaps/ (5 minutes), ``small`` the
aggregator tests' default (10 minutes, 300 k packets on a /16), ``bench`` the
parse benchmark's input (2 M packets, mostly scan and background traffic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.gen.planted import POPULAR_TCP_PORTS, Planter

__all__ = ["SCENARIOS", "Scenario", "plant"]

#: backscatter packets below which a planted "pass" victim would not be robust
_VICTIM_MIN = 120


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration_s: float
    packets: int  # default total packet count
    scale: float  # size of the planted cast relative to ``small``
    bulk_scan_share: float  # share of the filler that is bulk scanners (the rest: background)
    doc: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("sample", 300.0, 40_000, 0.25, 0.3, "the committed sample capture: 5 minutes, ~3 MB"),
        Scenario("small", 600.0, 300_000, 1.0, 0.5, "aggregator tests: 10 minutes, 300 k packets"),
        Scenario(
            "bench", 600.0, 2_000_000, 1.0, 0.75, "parse benchmark: 2 M packets, mostly scans/background"
        ),
    )
}


def plant(p: Planter, sc: Scenario, total: int) -> None:
    """Plant the scenario's cast, then filler up to ``total`` packets."""

    def k(n: int, floor: int) -> int:
        return max(int(n * sc.scale), floor)

    d = p.duration_ns / 1e9
    # -- tool-shaped TCP scanners, every scan kind
    p.tcp_scanner("zmap", "horizontal", [443], k(3000, 300))
    p.tcp_scanner("zmap", "horizontal", [80], k(1500, 250), variant="mss")
    p.tcp_scanner("masscan", "horizontal", [3389], k(2000, 300))
    p.tcp_scanner("masscan", "strobe", [22, 80, 443, 8080], k(2400, 600))
    for _ in range(3):
        p.tcp_scanner("mirai", "horizontal", [23], k(800, 300))
    p.tcp_scanner("nmap", "vertical", [], k(1000, 300))
    p.tcp_scanner("nmap", "strobe", [22, 80, 443], k(900, 450))
    p.tcp_scanner("nmap", "vertical", [], k(1000, 300), variant="xmas")
    p.tcp_scanner("unicornscan", "horizontal", [8080], k(800, 250))
    p.tcp_scanner("generic", "horizontal", [22], k(1200, 300), variant="linux")
    p.tcp_scanner("generic", "strobe", [80, 8080, 8443], k(900, 450), variant="windows")
    p.tcp_scanner("generic", "vertical", [], k(400, 200), variant="linux")
    p.tcp_scanner("generic", "random", [], k(600, 250), variant="linux")
    # -- UDP service scanners
    p.udp_scanner("horizontal", [53], k(800, 250), zmap=True)
    p.udp_scanner("horizontal", [123], k(600, 200))
    p.udp_scanner("horizontal", [161], k(600, 200), zmap=True)
    p.udp_scanner("horizontal", [1900], k(600, 200))
    p.udp_scanner("horizontal", [5060], k(600, 200))
    p.udp_scanner("strobe", [53, 123, 161], k(600, 450))
    # masscan -pU:1-1000 (port 80 left out: corsaro3's udp-80 rule would tag it)
    p.udp_scanner("vertical", [q for q in range(1, 1001) if q != 80], 0, masscan=True)
    if p.dark.v6:
        p.ipv6_scanner(22, k(200, 150))
    # -- backscatter: victims above the thresholds (span capped to 80 % of the capture)
    span = min(0.8 * d, 300.0)

    def vic(response: str, n: int, s: float, **kw: object) -> None:
        p.backscatter(response, k(n, _VICTIM_MIN), min(s, span), **kw)  # type: ignore[arg-type]

    vic("syn-ack", 1500, 300)
    vic("rst-ack", 600, 200)
    vic("rst", 400, 180)
    vic("echo-reply", 800, 240)
    vic("unreach-port", 400, 200)
    vic("unreach-host", 300, 150)
    vic("unreach-admin", 300, 150)
    vic("ttl-exceeded", 250, 120)
    # one victim attacked with two vectors: two (victim, protocol) entries
    rng = p.rng()
    both = p.pool.draw_one(rng)
    vic("syn-ack", 500, 200, victim=both)
    vic("echo-reply", 400, 200, victim=both)
    if p.dark.v6:
        vic("echo-reply", 200, 180, ipv6=True)
        vic("unreach-port", 150, 150, ipv6=True)
    # ... and three that must not pass, each failing one threshold by a wide margin
    p.backscatter("syn-ack", 15, min(180.0, 0.9 * d), expect="fail:packets")
    p.backscatter("rst-ack", 40, 30.0, expect="fail:duration")
    p.backscatter("echo-reply", 45, min(480.0, 0.9 * d), expect="fail:peak")
    # -- spoofed floods into the dark space
    p.spoofed_bogon(
        k(1500, 300),
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "0.0.0.0/8",
            "240.0.0.0/4",
            "100.64.0.0/10",
            "169.254.0.0/16",
        ],
    )
    p.spoofed_dark_source(k(500, 150))
    p.spoofed_random(k(3000, 600))
    # -- odds and ends the parser and sensor must handle
    p.fragments(k(40, 10))
    p.arp(20)
    p.outside(30)
    p.background_ipv6(40 if p.dark.v6 else 0)
    # -- filler
    planted = sum(len(b) for b in p.blocks)
    filler = total - planted
    if filler < 0:
        raise ValueError(
            f"scenario {sc.name!r} plants {planted} packets; --packets must be at least that ({total} given)"
        )
    _bulk_scanners(p, int(filler * sc.bulk_scan_share))
    p.background(total - sum(len(b) for b in p.blocks))


def _bulk_scanners(p: Planter, budget: int) -> None:
    """Horizontal scanners of assorted tools on popular ports, until ``budget`` packets are used."""
    rng = p.rng()
    tools = ["zmap", "masscan", "mirai", "generic", "unicornscan"]
    weights = np.array([0.3, 0.2, 0.25, 0.2, 0.05])
    cap = max(300, min(30_000, p.dark.size_v4 // 2))
    while budget >= 300:
        n = int(np.clip(np.exp(rng.normal(np.log(3000), 0.8)), 300, cap))
        if budget - n < 300:
            n = budget
        tool = str(rng.choice(tools, p=weights))
        port = int(rng.choice(POPULAR_TCP_PORTS))
        p.tcp_scanner(tool, "horizontal", [port], n, frac=(0.1, 0.9), bulk=True)
        budget -= n
