"""Spoofing reasons, per flow tuple and per source, as bit flags.

Theory of operation (DOMAIN.md section 5). Per flow tuple, corsaro3's
per-packet ``spoofed`` tag (libcorsaro_filtering.c) -- any of:

- PROTOCOL: protocol not ICMP, TCP, UDP or 41 (ICMPv6 too for IPv6);
- TCP_FLAGS: TCP flags (CWR/ECE ignored) other than SYN, ACK, RST, FIN,
  SYN-FIN, SYN-ACK, FIN-ACK, ACK-PSH, FIN-ACK-PSH -- unless the source's
  sampled probes prove a scanning tool (Nmap's NULL and Xmas scans send such
  flags from a real host that waits for the replies);
- TTL200: TTL >= 200 on non-ICMP, unless masscan-shaped -- a SYN with window
  1024 and no options (corsaro3), or an empty UDP datagram, masscan's probe on
  every port it has no built-in payload for (its UDP cookie is then invisible,
  and a scan proves itself only by the few probes that carry one, possibly
  minutes later) -- and, tool-aware, unless the source's sampled probes prove
  a scanning tool (ZMap also sends TTL 255; a fingerprint is evidence that the
  source is real);
- FRAGMENT: fragment offset != 0 or the reserved IP flag set;
- LAST_BYTE: last byte of an IPv4 source 0 or 255;
- SAME_ADDR: source == destination;
- PORT0: TCP or UDP port 0;
- UDP80: UDP to port 80.

Per source: BOGON (IANA special-purpose, :mod:`aggregator.bogons`), DARK
(inside the telescope's own prefixes), TTL_INCONSISTENT (hop counts -- the
smallest initial TTL in {32, 64, 128, 255} at or above the observed TTL,
minus it -- spanning more than ``spoof_hop_spread``: Jin et al. 2003), unless
a tool explains the TTLs: a proven fingerprint, or TTLs that fit Nmap's
random initial TTL of 37-59 (all seen at most 59, within a 22-wide window:
Nmap does this for UDP and other non-SYN probes too, where no other
fingerprint exists).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from darknet_iodef.flowtuple import IPF_FRAGMENT, IPF_RESERVED

__all__ = ["REASONS", "flow_reasons", "hop_count", "nmap_ttl_window", "reason_names"]

PROTOCOL: Final = 1 << 0
TCP_FLAGS: Final = 1 << 1
TTL200: Final = 1 << 2
FRAGMENT: Final = 1 << 3
LAST_BYTE: Final = 1 << 4
SAME_ADDR: Final = 1 << 5
PORT0: Final = 1 << 6
UDP80: Final = 1 << 7
BOGON: Final = 1 << 8
DARK: Final = 1 << 9
TTL_INCONSISTENT: Final = 1 << 10

REASONS: Final = {
    PROTOCOL: "protocol",
    TCP_FLAGS: "tcp-flags",
    TTL200: "ttl-200",
    FRAGMENT: "fragment",
    LAST_BYTE: "last-byte-0-255",
    SAME_ADDR: "src-equals-dst",
    PORT0: "port-0",
    UDP80: "udp-80",
    BOGON: "bogon",
    DARK: "inside-darknet",
    TTL_INCONSISTENT: "ttl-inconsistent",
}

_FIN, _SYN, _RST, _PSH, _ACK, _URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_GOOD_FLAGS = np.zeros(64, dtype=bool)
for _f in (_SYN, _ACK, _RST, _FIN, _SYN | _FIN, _SYN | _ACK, _FIN | _ACK, _ACK | _PSH, _FIN | _ACK | _PSH):
    _GOOD_FLAGS[_f] = True
_INITIAL_TTLS = np.array([32, 64, 128, 255], dtype=np.int16)


def hop_count(ttl: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Smallest common initial TTL at or above the observed one, minus it."""
    t = ttl.astype(np.int16)
    init = _INITIAL_TTLS[np.searchsorted(_INITIAL_TTLS, t, side="left")]
    return np.asarray(init - t, dtype=np.int16)


def flow_reasons(
    flows: Any,
    src_lo: npt.NDArray[np.uint64],
    is4: npt.NDArray[np.bool_],
    same_addr: npt.NDArray[np.bool_],
    tool_proven: npt.NDArray[np.bool_],
) -> npt.NDArray[np.uint16]:
    """corsaro3's per-packet reasons for each flow tuple (0: not spoofed).

    ``flows``: a flow array or anything indexable by field name (:class:`Fields`).
    """
    proto = flows["protocol"]
    tcp = proto == 6
    udp = proto == 17
    icmp = (proto == 1) | ((proto == 58) & ~is4)
    flags = (flows["tcp_flags"] & 0x3F).astype(np.intp)
    frag = (flows["ip_flags"] & IPF_FRAGMENT) != 0
    r = np.zeros(len(flows), dtype=np.uint16)
    r |= np.where(~(tcp | udp | icmp | (proto == 41)), PROTOCOL, 0).astype(np.uint16)
    r |= np.where(tcp & ~frag & ~_GOOD_FLAGS[flags] & ~tool_proven, TCP_FLAGS, 0).astype(np.uint16)
    empty_udp = udp & ~frag & (flows["ip_len"] == np.where(is4, 28, 48))  # 20/40 + 8 header bytes
    masscan_syn = tcp & (flags == _SYN) & (flows["tcp_window"] == 1024) & (flows["tcp_hdr_len"] <= 20)
    masscan_shape = masscan_syn | empty_udp
    r |= np.where((flows["ttl"] >= 200) & ~icmp & ~masscan_shape & ~tool_proven, TTL200, 0).astype(np.uint16)
    r |= np.where((flows["ip_flags"] & (IPF_FRAGMENT | IPF_RESERVED)) != 0, FRAGMENT, 0).astype(np.uint16)
    last = src_lo & np.uint64(0xFF)
    r |= np.where(is4 & ((last == 0) | (last == 255)), LAST_BYTE, 0).astype(np.uint16)
    r |= np.where(same_addr, SAME_ADDR, 0).astype(np.uint16)
    ports0 = (flows["src_port"] == 0) | (flows["dst_port"] == 0)
    r |= np.where((tcp | udp) & ~frag & ports0, PORT0, 0).astype(np.uint16)
    r |= np.where(udp & ~frag & (flows["dst_port"] == 80), UDP80, 0).astype(np.uint16)
    return r


NMAP_TTL_MAX, NMAP_TTL_WIDTH = 59, 22


def nmap_ttl_window(ttl_min: npt.NDArray[np.uint8], ttl_max: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """TTLs that Nmap's random 37-59 initial TTL explains (after some hops)."""
    return np.asarray((ttl_max <= NMAP_TTL_MAX) & (ttl_max.astype(np.int16) - ttl_min <= NMAP_TTL_WIDTH))


def reason_names(bits: int) -> list[str]:
    return [name for bit, name in REASONS.items() if bits & bit]
