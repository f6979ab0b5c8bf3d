"""A small, varied darknet capture for the live-capture tests (made with scapy).

~3,000 valid Ethernet frames in file order, one millisecond apart: SYN scans
with options (IPv4 and IPv6), UDP probes, ICMP echo and errors quoting a
packet (backscatter), 802.1Q-tagged frames, first and later fragments, a
truncated TCP header, traffic to addresses outside the darknet, and ARP.
"""

from __future__ import annotations

import random
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

__all__ = ["DARKNET", "write_capture"]

DARKNET = "203.0.113.0/24,2001:db8:dead::/48"
_BASE_TS = 1_700_000_000  # all frames fall in one day-long interval


def _eth(dst: str = "02:00:00:00:00:01", src: str = "02:00:00:00:0a:01") -> Ether:
    return Ether(dst=dst, src=src)


def write_capture(path: Path, seed: int = 6) -> dict[str, int]:
    """Write the capture; return how many frames of each kind it holds."""
    rnd = random.Random(seed)
    pkts: list[Packet] = []
    kinds: dict[str, int] = {}

    def add(kind: str, p: Packet) -> None:
        pkts.append(p)
        kinds[kind] = kinds.get(kind, 0) + 1

    for i in range(1200):  # SYN scanners: 40 sources, a few tools' shapes
        src = f"192.0.2.{i % 40 + 1}" if i % 3 else f"100.{i % 7}.{i % 11}.{i % 40 + 1}"
        opts = [("MSS", 1460)] if i % 2 else [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b"")]
        add("tcp", _eth() / IP(src=src, dst=f"203.0.113.{rnd.randrange(256)}", ttl=rnd.choice((64, 255, 49)),
                               id=54321 if i % 5 == 0 else rnd.randrange(65536))
            / TCP(sport=rnd.randrange(1024, 65536), dport=rnd.choice((22, 23, 80, 443, 2323, 3389)),
                  flags="S", seq=rnd.randrange(1 << 32), window=rnd.choice((1024, 65535, 29200)),
                  options=opts))
    for i in range(600):
        add("udp", _eth() / IP(src=f"198.18.{i % 9}.{i % 30 + 1}", dst=f"203.0.113.{i % 256}", ttl=50)
            / UDP(sport=rnd.randrange(1024, 65536), dport=rnd.choice((53, 123, 161, 1900, 5060)))
            / Raw(b"\x00" * rnd.randrange(0, 60)))
    for i in range(200):
        add("icmp", _eth() / IP(src=f"192.0.2.{i % 20 + 100}", dst=f"203.0.113.{i % 256}")
            / ICMP(type=8, id=i))
    for i in range(150):  # backscatter: errors quoting a packet sent from a dark address
        quoted = IP(src=f"203.0.113.{i % 256}", dst=f"198.51.100.{i % 10}", ttl=40) / TCP(
            sport=80, dport=i + 1000)
        add("icmp_err", _eth() / IP(src=f"198.51.100.{i % 10}", dst=f"203.0.113.{i % 256}")
            / ICMP(type=3, code=rnd.choice((1, 3, 13))) / bytes(quoted)[:28])
    for i in range(150):  # SYN-ACK backscatter
        add("tcp", _eth() / IP(src=f"198.51.100.{i % 5 + 20}", dst=f"203.0.113.{i % 256}")
            / TCP(sport=443, dport=rnd.randrange(1024, 65536), flags="SA"))
    for i in range(250):
        add("ipv6", _eth() / IPv6(src=f"2001:db8:1::{i % 15 + 1:x}", dst=f"2001:db8:dead::{i:x}", hlim=60)
            / TCP(sport=40000 + i, dport=rnd.choice((22, 80)), flags="S"))
    for i in range(120):
        add("vlan", _eth() / Dot1Q(vlan=42 + i % 3)
            / IP(src=f"192.0.2.{i % 10 + 200}", dst=f"203.0.113.{i % 256}")
            / TCP(sport=5555, dport=23, flags="S"))
    for i in range(40):  # a first fragment and a later one
        add("frag", _eth() / IP(src="192.0.2.250", dst=f"203.0.113.{i}", id=i, flags="MF") / UDP(dport=53)
            / Raw(b"x" * 40))
        add("frag", _eth() / IP(src="192.0.2.250", dst=f"203.0.113.{i}", id=i, frag=6, proto=17)
            / Raw(b"y" * 20))
    for i in range(20):  # TCP header cut short: counted as malformed
        add("truncated", _eth() / IP(src="192.0.2.251", dst=f"203.0.113.{i}", proto=6) / Raw(b"\x01\x02" * 5))
    for i in range(300):
        add("outside", _eth() / IP(src=f"192.0.2.{i % 50 + 1}", dst=f"198.51.100.{i % 256}") / TCP(dport=80))
    for i in range(40):
        add("arp", _eth(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=f"203.0.113.{i}", pdst="203.0.113.1"))
    rnd.shuffle(pkts)
    for i, p in enumerate(pkts):
        p.time = _BASE_TS + i / 1000
    wrpcap(str(path), pkts)
    return kinds
