"""Wire constants the frame decoder uses, named after the RFC and registry fields.

Theory of operation: every number the decoder compares a header field with
lives here, once, with where it comes from, so the decoder itself reads as
"where is the next header and is it whole" (STYLE.md habit 2).
"""

from __future__ import annotations

__all__ = [
    "AF_INET",
    "AF_INET6_VALUES",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETH_HDR",
    "ICMP4_ERRORS",
    "ICMP6_ERRORS",
    "IPPROTO_AH",
    "IPPROTO_DSTOPTS",
    "IPPROTO_FRAGMENT",
    "IPPROTO_HOPOPTS",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "IPPROTO_ROUTING",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPV6_EXT_HEADERS",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "LINKTYPE_RAW_OLD",
    "MAX_IPV6_EXT_HEADERS",
    "QUOTE_PORT_PROTOCOLS",
    "SUPPORTED_LINKTYPES",
    "TCPOPT_EOL",
    "TCPOPT_MSS",
    "TCPOPT_NOP",
    "VLAN_TPIDS",
]

# Link types (tcpdump.org link-layer header types registry)
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD = 12  # DLT_RAW as written by some systems: bare IPv4/IPv6
LINKTYPE_RAW = 101  # bare IPv4/IPv6, version from the first nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux cooked capture v1, 16-byte header
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # Linux cooked capture v2, 20-byte header
SUPPORTED_LINKTYPES = frozenset({
    LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_OLD, LINKTYPE_RAW, LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2,
})

# Ethernet (IEEE 802.3) and VLAN tags: 802.1Q C-tag, 802.1ad S-tag, and the
# pre-standard 0x9100 S-tag some switches still emit; any depth is walked
ETH_HDR = 14
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD

# BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 is 10 on
# Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on Darwin
AF_INET = 2
AF_INET6_VALUES = (10, 24, 28, 30)

# IP protocol numbers (IANA)
IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
#: IPv6 extension headers walked to reach the transport (RFC 8200 section 4, AH RFC 4302)
IPV6_EXT_HEADERS = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS, IPPROTO_AH)
#: a longer chain is treated as a malformed header (no real stack sends one)
MAX_IPV6_EXT_HEADERS = 16
#: quoted transports whose first 4 bytes are the source and destination port
QUOTE_PORT_PROTOCOLS = (IPPROTO_TCP, IPPROTO_UDP)

# ICMP error messages that quote the offending datagram (RFC 792, RFC 4443):
# v4 destination unreachable, source quench, redirect, time exceeded, parameter problem
ICMP4_ERRORS = (3, 4, 5, 11, 12)
# v6 destination unreachable, packet too big, time exceeded, parameter problem
ICMP6_ERRORS = (1, 2, 3, 4)

# TCP options (RFC 9293 section 3.2)
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
