"""Scanning-tool fingerprints, as a table of vectorised tests on probe samples.

Theory of operation (DOMAIN.md section 4, from each tool's source):

=============  ===============================================================
tool           test on one sampled probe
=============  ===============================================================
zmap           IPv4 and IP ID == 54321 (ZMap < 4.1.0; 4.1.0 randomises it)
masscan        IPv4, IP ID == (dst ^ dport ^ cookie) & 0xFFFF -- low 16 bits
               only (inetrg/spoki forgot the mask). The cookie is the TCP
               sequence number of a SYN, or the request ID masscan writes
               into its built-in UDP payloads (:data:`UDP_COOKIES`); a UDP
               probe without such a payload carries no cookie on the wire
               and is not tested
mirai          IPv4 TCP SYN, sequence number == destination address
nmap           window 1024/2048/3072/4096, TTL 37-59 at the sender (seen as
               5-59: up to 32 hops), and either a SYN with options = MSS 1460
               only (-sS) or a stealth probe with no options at all (-sN, -sF,
               -sX, -sA/-sW, -sM: nmap adds options to SYN probes only)
unicornscan    TCP SYN, seq ^ dst ^ ((dport << 16) + sport) is one constant
               for every probe of a scan (a property of several probes)
=============  ===============================================================

One 16-bit test matches a random packet with probability 2^-16, so a lone
probe with IP ID 54321 proves nothing. A tool is named only when at least
``tool_min_samples`` sampled probes of the source were tested and *all* of
them match (Merit's darknet-events checks all of up to 3 samples). A probe is
tested by every tool whose ``applies`` test it passes (every probe, unless
the tool says otherwise). The per-tool match counts are the evidence shown in
the event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aggregator.keys import dst32
from darknet_iodef.flowtuple import SAMPLE_DTYPE

__all__ = [
    "TOOLS",
    "UDP_COOKIES",
    "UNICORNSCAN",
    "Fingerprint",
    "is_syn",
    "tool_matches",
    "tools_tested",
    "udp_cookie",
    "unicorn_value",
]

_FIN, _SYN, _RST, _PSH, _ACK, _URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NMAP_WINDOWS = (1024, 2048, 3072, 4096)
#: flags of nmap's option-less probes: -sN, -sF, -sX, -sA and -sW, -sM
NMAP_STEALTH_FLAGS = (0, _FIN, _FIN | _PSH | _URG, _ACK, _FIN | _ACK)
NMAP_TTL = (5, 59)
MSS_ONLY = 0x02  # option kinds packed low byte first: one option, kind 2 (MSS)

Arr = npt.NDArray[np.bool_]
#: a sample array, or anything indexable by field name (``aggregator.detector.Fields``)
Probes = Any


def is_syn(s: Probes) -> Arr:
    """A pure SYN (ECN bits allowed): no ACK, RST or FIN."""
    flags = s["tcp_flags"].astype(np.uint16)
    return (s["protocol"] == 6) & ((flags & (_SYN | _ACK | _RST | _FIN)) == _SYN)


def _v4(s: Probes) -> Arr:
    return np.asarray(s["ip_version"] == 4)


def _zmap(s: Probes) -> Arr:
    return _v4(s) & (s["ip_id"] == 54321)


_HEAD = SAMPLE_DTYPE["payload_head"].itemsize  # payload bytes kept per sample
I64 = npt.NDArray[np.int64]


def _byte(b: I64, k: I64) -> I64:
    """Per row, byte ``k`` (a per-row offset, clipped into the head) of the payload head."""
    return b[np.arange(b.shape[0]), np.clip(k, 0, _HEAD - 1)]


def _id16(b: I64, cap: I64, declared: I64) -> tuple[Arr, I64]:
    """A 16-bit transaction ID in bytes 0-1 of a DNS-style header (12 bytes at least)."""
    return (declared >= 12) & (cap >= 2), (b[:, 0] << 8) | b[:, 1]


def _snmp_request_id(b: I64, cap: I64, declared: I64) -> tuple[Arr, I64]:
    """The low 16 bits of an SNMPv1/v2c GetRequest's request-id (BER, short lengths):
    30 L 02 01 ver 04 clen community A0 L 02 ilen request-id..."""
    pdu = 7 + b[:, 6]  # after the community string
    ilen = _byte(b, pdu + 3)
    end = pdu + 4 + ilen  # one past the request-id
    ok = ((b[:, 0] == 0x30) & (b[:, 2] == 0x02) & (b[:, 3] == 0x01) & (b[:, 5] == 0x04)
          & (_byte(b, pdu) == 0xA0) & (_byte(b, pdu + 2) == 0x02)
          & (ilen >= 1) & (ilen <= 4) & (end <= cap))  # fmt: skip
    hi = np.where(ilen >= 2, _byte(b, end - 2), 0)
    return ok, (hi << 8) | _byte(b, end - 1)


# Where masscan's built-in UDP payloads (templ-payloads) carry its per-probe
# cookie, by destination port: the protocol, and how to read its request ID.
# Checked on a real masscan capture (../shared/pcaps/scan_masscan_udp0-1000_esnet.pcap):
# the DNS and NBNS transaction IDs and the SNMP request-id satisfy the IP ID rule.
UDP_COOKIES: dict[int, tuple[str, Callable[[I64, I64, I64], tuple[Arr, I64]]]] = {
    53: ("dns", _id16),
    137: ("nbns", _id16),
    161: ("snmp", _snmp_request_id),
}


def udp_cookie(s: Probes) -> tuple[Arr, npt.NDArray[np.uint32]]:
    """Per sample: does a masscan UDP payload carry a cookie, and its low 16 bits."""
    n = len(s)
    has = np.zeros(n, dtype=bool)
    cookie = np.zeros(n, dtype=np.uint32)
    udp = _v4(s) & (s["protocol"] == 17)
    if not udp.any():
        return has, cookie
    b = np.ascontiguousarray(s["payload_head"]).view(np.uint8).reshape(-1, _HEAD).astype(np.int64)
    cap = s["payload_cap"].astype(np.int64)  # how many bytes of the head are real
    declared = s["payload_len"].astype(np.int64)
    for dport, (_protocol, read) in UDP_COOKIES.items():
        rows = udp & (s["dst_port"] == dport)
        if rows.any():
            ok, val = read(b, cap, declared)
            ok &= rows
            has |= ok
            cookie = np.where(ok, val.astype(np.uint32), cookie)
    return has, cookie


def _masscan_applies(s: Probes) -> Arr:
    return _v4(s) & (is_syn(s) | udp_cookie(s)[0])


def _masscan(s: Probes) -> Arr:
    d = dst32(s["dst_ip"]).astype(np.uint32)
    has_udp, udp_val = udp_cookie(s)
    syn = _v4(s) & is_syn(s)
    cookie = np.where(syn, s["tcp_seq"].astype(np.uint32), udp_val)
    want = (d ^ s["dst_port"].astype(np.uint32) ^ cookie) & np.uint32(0xFFFF)
    return (syn | has_udp) & ((s["ip_id"].astype(np.uint32) & np.uint32(0xFFFF)) == want)


def _mirai(s: Probes) -> Arr:
    d = dst32(s["dst_ip"]).astype(np.uint32)
    return _v4(s) & is_syn(s) & (s["tcp_seq"].astype(np.uint32) == d)


def _nmap(s: Probes) -> Arr:
    syn_probe = is_syn(s) & (s["tcp_opt_kinds"] == MSS_ONLY) & (s["tcp_mss"] == 1460)
    flags = s["tcp_flags"].astype(np.uint16) & np.uint16(0x3F)
    stealth = (s["protocol"] == 6) & np.isin(flags, NMAP_STEALTH_FLAGS) & (s["tcp_hdr_len"] == 20)
    return (
        (syn_probe | stealth)
        & np.isin(s["tcp_window"], NMAP_WINDOWS)
        & (s["ttl"] >= NMAP_TTL[0])
        & (s["ttl"] <= NMAP_TTL[1])
    )


def unicorn_value(s: Probes) -> npt.NDArray[np.uint32]:
    """Unicornscan's per-scan constant: seq ^ dst ^ ((dport << 16) + sport)."""
    d = dst32(s["dst_ip"]).astype(np.uint32)
    ports = (s["dst_port"].astype(np.uint32) << np.uint32(16)) + s["src_port"].astype(np.uint32)
    return np.asarray(s["tcp_seq"].astype(np.uint32) ^ d ^ ports, dtype=np.uint32)


def _unicorn_candidate(s: Probes) -> Arr:
    return is_syn(s)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    name: str
    rule: str  # for the evidence text
    test: Callable[[Probes], Arr]
    #: which probes the tool is tested on (None: every probe); a tool is named
    #: when at least ``tool_min_samples`` probes were tested and all matched
    applies: Callable[[Probes], Arr] | None = None
    #: True: ``test`` only says the probe *can* match; the probes must also share
    #: one :func:`unicorn_value` (the scan detector keeps the first one per source)
    constant: bool = False


UNICORNSCAN = Fingerprint(
    "unicornscan", "seq ^ dst ^ ((dport << 16) + sport) constant", _unicorn_candidate, constant=True
)

#: in order of preference when several tools match every probe
TOOLS: tuple[Fingerprint, ...] = (
    Fingerprint(
        "masscan",
        "ip_id == (dst ^ dport ^ cookie) & 0xFFFF, cookie = SYN seq or DNS/NBNS/SNMP request ID",
        _masscan,
        _masscan_applies,
    ),
    Fingerprint("mirai", "seq == dst", _mirai),
    Fingerprint("zmap", "ip_id == 54321", _zmap),
    Fingerprint(
        "nmap",
        "window 1024..4096, TTL 5-59, SYN with MSS 1460 only or NULL/FIN/Xmas/ACK/Maimon without options",
        _nmap,
    ),
    UNICORNSCAN,
)


def tools_tested(samples: Any) -> npt.NDArray[np.bool_]:
    """(len(samples), len(TOOLS)) boolean: which tools test each sample (``Fingerprint.applies``)."""
    tested = np.ones((len(samples), len(TOOLS)), dtype=bool)
    for j, fp in enumerate(TOOLS):
        if fp.applies is not None:
            tested[:, j] = fp.applies(samples)
    return tested


def tool_matches(samples: Any) -> npt.NDArray[np.bool_]:
    """(len(samples), len(TOOLS)) boolean: which per-probe tests each sample passes.

    ``samples``: a sample array or anything indexable by field name (``Fields``).
    A tool's test implies its ``applies``: a probe matches only tools that test it.
    """
    out = np.zeros((len(samples), len(TOOLS)), dtype=bool)
    for j, fp in enumerate(TOOLS):
        out[:, j] = fp.test(samples)
    return out
