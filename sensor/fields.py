"""Per-packet header fields: the parser's output layout, declared once.

Theory of operation: the parser turns a batch of frames into one numpy
structured array with this dtype -- one row per frame, no Python object per
packet. Field names follow the RFC header fields (and tshark where a test
compares against it). Absent fields are 0; ``layers`` says which parts were
present, ``status`` why a frame was not fully decoded.

Conventions
- ``ts_ns``: int64 nanoseconds since the Unix epoch (event time).
- IPv4 addresses: host-order uint32 (``src_ip4``); IPv6: 16 raw bytes
  (``src_ip6``). ``ip_version`` says which is set.
- ``ip_len``: IPv4 total length; IPv6 payload length + 40.
- ``ip_id``: IPv4 identification; for IPv6 the fragment header's identification.
- ``frag_offset`` in bytes (as tshark's ``ip.frag_offset``); ``frag_flags``
  bits below. Ports and transport fields only in a first (offset 0) fragment.
- ``hop_limit`` is the TTL for IPv4 and hop limit for IPv6 (field ``ttl``).
- ``tcp_flags``: the 12-bit flags field (NS..FIN as tshark's ``tcp.flags``).
- ``tcp_hdr_len`` in bytes; ``tcp_mss`` 0 when no MSS option;
  ``tcp_opt_kinds``: the first 8 option kinds (EOL ends, NOP kept), packed
  little-endian one byte each (kind of option 1 in the low byte).
- ICMP/ICMPv6 errors quote the offending packet: ``inner_*`` fields hold its
  source, destination, protocol and ports (``layers`` bits INNER, INNER_PORTS).
- ``payload_len``: TCP/UDP payload length as the headers declare it (UDP
  length - 8; IP length minus IP and TCP headers), capped at 65535;
  ``payload_head``: its first ``PAYLOAD_HEAD`` bytes as captured, zero padded
  (first fragment only); ``payload_cap``: how many of them are real (captured
  and inside the declared payload and the IP datagram; it fills what was a
  padding byte). Scanning tools hide their per-probe cookie in
  request IDs there (masscan's UDP probes: DNS/NBNS transaction ID, SNMP
  request-id), the only on-wire proof of some tools.
- ``vlan``: the outermost 802.1Q/802.1ad VLAN ID (0 = untagged);
  ``src_mac``: Ethernet source address as a 48-bit integer (0 = none). These
  identify the ingress link for spoofing summaries.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "FRAG_DF",
    "FRAG_MF",
    "FRAG_RESERVED",
    "LAYER_INNER",
    "LAYER_INNER_PORTS",
    "LAYER_IP",
    "LAYER_TRANSPORT",
    "PACKET_DTYPE",
    "PAYLOAD_HEAD",
    "TCP_ACK",
    "TCP_CWR",
    "TCP_ECE",
    "TCP_FIN",
    "TCP_NS",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "TCP_URG",
    "Status",
]

PACKET_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("iface", "<u2"),
        ("linktype", "<u2"),
        ("wire_len", "<u4"),
        ("cap_len", "<u4"),
        ("vlan", "<u2"),
        ("src_mac", "<u8"),
        ("layers", "u1"),
        ("status", "u1"),
        ("ip_version", "u1"),
        ("protocol", "u1"),
        ("ttl", "u1"),
        ("frag_flags", "u1"),
        ("frag_offset", "<u2"),
        ("ip_id", "<u4"),
        ("ip_len", "<u4"),
        ("src_ip4", "<u4"),
        ("dst_ip4", "<u4"),
        ("src_ip6", "V16"),
        ("dst_ip6", "V16"),
        ("src_port", "<u2"),
        ("dst_port", "<u2"),
        ("tcp_flags", "<u2"),
        ("tcp_window", "<u2"),
        ("tcp_seq", "<u4"),
        ("tcp_ack", "<u4"),
        ("tcp_hdr_len", "u1"),
        ("icmp_type", "u1"),
        ("icmp_code", "u1"),
        ("inner_ip_version", "u1"),
        ("tcp_mss", "<u2"),
        ("inner_protocol", "u1"),
        ("payload_cap", "u1"),
        ("tcp_opt_kinds", "<u8"),
        ("inner_src_ip4", "<u4"),
        ("inner_dst_ip4", "<u4"),
        ("inner_src_ip6", "V16"),
        ("inner_dst_ip6", "V16"),
        ("inner_src_port", "<u2"),
        ("inner_dst_port", "<u2"),
        ("payload_len", "<u2"),
        ("payload_head", "V24"),
    ]
)

#: bytes of the TCP/UDP payload kept per packet (``payload_head``)
PAYLOAD_HEAD = 24

# ``layers`` bits: which parts of the frame were decoded
LAYER_IP = 0x01  # an IPv4/IPv6 header
LAYER_TRANSPORT = 0x02  # TCP/UDP/ICMP header (first fragment only)
LAYER_INNER = 0x04  # an ICMP error's quoted IP header
LAYER_INNER_PORTS = 0x08  # ... and the quoted transport ports

# ``frag_flags`` bits (IPv4 flags field; IPv6 fragment header M flag -> MF)
FRAG_MF = 0x01
FRAG_DF = 0x02
FRAG_RESERVED = 0x04

# TCP flag bits (RFC 9293 plus ECN, RFC 3168; NS RFC 3540)
TCP_FIN = 0x001
TCP_SYN = 0x002
TCP_RST = 0x004
TCP_PSH = 0x008
TCP_ACK = 0x010
TCP_URG = 0x020
TCP_ECE = 0x040
TCP_CWR = 0x080
TCP_NS = 0x100


class Status(enum.IntEnum):
    """Why a frame was not (fully) decoded; counted per reason, never fatal."""

    OK = 0
    NOT_IP = 1  # ARP, LLDP ...: not an error, counted
    UNKNOWN_LINKTYPE = 2
    TRUNCATED_LINK = 3  # captured bytes end inside the link header
    TRUNCATED_IP = 4  # ... inside the IP header
    BAD_IP_HEADER = 5  # version/IHL/length fields inconsistent
    TRUNCATED_TRANSPORT = 6  # ... inside the TCP/UDP/ICMP header
    BAD_TRANSPORT_HEADER = 7  # e.g. TCP data offset < 5
    TRUNCATED_EXT_HEADERS = 8  # IPv6 extension header chain cut short
