"""An independent flow-tuple oracle: tshark's per-packet fields folded with collections.Counter.

It shares no code with the sensor: tshark decodes the capture, and the flow
rules of docs/flows.md are re-stated here in plain Python, packet by packet.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections import Counter
from pathlib import Path

__all__ = ["KEY_NAMES", "tshark_flow_counts"]

#: the flow key, in this order, as the oracle builds it
KEY_NAMES = (
    "interval_start_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "ttl", "tcp_flags",
    "ip_len", "tcp_window", "tcp_hdr_len", "ip_flags", "vlan", "src_mac", "quoted_dst_ip",
    "quoted_protocol", "quoted_dst_port", "ip_version",
)

_FIELDS = (
    "frame.time_epoch", "eth.src", "sll.src.eth", "vlan.id", "ip.src", "ip.dst", "ip.proto", "ip.ttl",
    "ip.len",
    "ip.flags.rb", "ip.flags.df", "ip.flags.mf", "ip.frag_offset", "ipv6.src", "ipv6.dst", "ipv6.hlim",
    "ipv6.plen", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.window_size_value", "tcp.hdr_len",
    "udp.srcport", "udp.dstport", "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
)
_ICMP4_ERRORS = {3, 4, 5, 11, 12}
_ICMP6_ERRORS = {1, 2, 3, 4}


def _ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _addr(text: str) -> str:
    return str(ipaddress.ip_address(text))


def tshark_flow_counts(tshark: str, capture: Path, interval_s: int, dark: list[str]) -> Counter[tuple]:
    """Counter of flow keys (KEY_NAMES order) -> packets, for packets to ``dark`` prefixes."""
    cmd = [tshark, "-n", "-r", str(capture), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in _FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    # a capture cut short mid-record: tshark prints the whole records, then fails
    if proc.returncode != 0 and not (proc.returncode == 2 and "cut short" in proc.stderr):
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    out = proc.stdout
    nets = [ipaddress.ip_network(d) for d in dark]
    interval = interval_s * 1_000_000_000
    counts: Counter[tuple] = Counter()
    for line in out.splitlines():
        v = dict(zip(_FIELDS, [c.split("|") for c in line.split("\t")], strict=True))

        def first(name: str, default: str = "0", v: dict[str, list[str]] = v) -> str:
            return v[name][0] if v[name][0] != "" else default

        def second(name: str, v: dict[str, list[str]] = v) -> str | None:
            return v[name][1] if len(v[name]) > 1 else None

        if first("ip.src", "") != "":
            version, pre = 4, "ip"
            src, dst = first("ip.src"), first("ip.dst")
            ttl, ip_len = int(first("ip.ttl")), int(first("ip.len"))
            ip_flags = (int(first("ip.flags.mf")) | int(first("ip.flags.df")) << 1
                        | int(first("ip.flags.rb")) << 2 | (8 if int(first("ip.frag_offset")) else 0))
        elif first("ipv6.src", "") != "":
            version, pre = 6, "ipv6"
            src, dst = first("ipv6.src"), first("ipv6.dst")
            ttl, ip_len = int(first("ipv6.hlim")), int(first("ipv6.plen")) + 40
            ip_flags = 0
        else:
            continue  # not IP
        if not any(ipaddress.ip_address(dst) in n for n in nets if n.version == version):
            continue
        sport = dport = flags = window = hdr_len = 0
        q_dst, q_proto, q_dport = None, 0, 0
        icmp = "icmp" if version == 4 else "icmpv6"
        # IPv4: the outer header's protocol decides (a GRE or IP-in-IP packet has no
        # ports of its own even where tshark decodes the tunnelled UDP inside)
        outer = int(first("ip.proto")) if version == 4 else None
        if outer is not None and outer not in (1, 6, 17):
            protocol = outer
        elif first(f"{icmp}.type", "") != "":
            protocol = 1 if version == 4 else 58
            sport, dport = int(first(f"{icmp}.type")), int(first(f"{icmp}.code"))
            errors = _ICMP4_ERRORS if version == 4 else _ICMP6_ERRORS
            if sport in errors and second(f"{pre}.dst") is not None:
                q_dst = second(f"{pre}.dst")
                q_proto = int(second("ip.proto") or 0) if version == 4 else 0
                # the quoted transport is the only one tshark decodes in this frame
                for t in ("udp", "tcp"):
                    if first(f"{t}.dstport", "") != "":
                        q_dport = int(first(f"{t}.dstport"))
                        if version == 6:
                            q_proto = 17 if t == "udp" else 6
        elif first("tcp.srcport", "") != "":
            protocol = 6
            sport, dport = int(first("tcp.srcport")), int(first("tcp.dstport"))
            raw_flags = int(first("tcp.flags"), 16)
            flags = raw_flags & 0xFF
            if raw_flags & 0x12 == 0x02:
                window, hdr_len = int(first("tcp.window_size_value")), int(first("tcp.hdr_len"))
        elif first("udp.srcport", "") != "":
            protocol = 17
            sport, dport = int(first("udp.srcport")), int(first("udp.dstport"))
        else:
            protocol = int(first("ip.proto")) if version == 4 else -1  # not in these captures
        ts = _ns(first("frame.time_epoch"))
        key = (
            ts - ts % interval, _addr(src), _addr(dst), sport, dport, protocol, ttl, flags,
            min(ip_len, 65535), window, hdr_len, ip_flags, int(first("vlan.id")),
            int(first("eth.src", first("sll.src.eth", "0")).replace(":", ""), 16),
            _addr(q_dst) if q_dst else None,
            q_proto, q_dport, version,
        )
        counts[key] += 1
    return counts
