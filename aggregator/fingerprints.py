"""Scanning-tool fingerprints, as a table of vectorised tests on probe samples.

Theory of operation (DOMAIN.md section 4, from each tool's source):

=============  ===============================================================
tool           test on one sampled probe
=============  ===============================================================
zmap           IPv4 and IP ID == 54321 (ZMap < 4.1.0; 4.1.0 randomises it)
masscan        IPv4 TCP SYN, IP ID == (dst ^ dport ^ seq) & 0xFFFF -- low 16
               bits only (inetrg/spoki forgot the mask)
mirai          IPv4 TCP SYN, sequence number == destination address
nmap           TCP SYN, window 1024/2048/3072/4096, options = MSS 1460 only,
               TTL 37-59 at the sender (seen as 5-59: up to 32 hops)
unicornscan    TCP SYN, seq ^ dst ^ ((dport << 16) + sport) is one constant
               for every probe of a scan (a property of several probes)
=============  ===============================================================

One 16-bit test matches a random packet with probability 2^-16, so a lone
probe with IP ID 54321 proves nothing. A tool is named only when at least
``tool_min_samples`` sampled probes of the source were tested and *all* of
them match (Merit's darknet-events checks all of up to 3 samples). The
per-tool match counts are the evidence shown in the event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aggregator.keys import dst32

__all__ = ["TOOLS", "UNICORNSCAN", "Fingerprint", "is_syn", "tool_matches", "unicorn_value"]

_SYN, _ACK, _RST, _FIN = 0x02, 0x10, 0x04, 0x01
NMAP_WINDOWS = (1024, 2048, 3072, 4096)
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


def _masscan(s: Probes) -> Arr:
    d = dst32(s["dst_ip"]).astype(np.uint32)
    want = (d ^ s["dst_port"].astype(np.uint32) ^ s["tcp_seq"].astype(np.uint32)) & np.uint32(0xFFFF)
    return _v4(s) & is_syn(s) & ((s["ip_id"].astype(np.uint32) & np.uint32(0xFFFF)) == want)


def _mirai(s: Probes) -> Arr:
    d = dst32(s["dst_ip"]).astype(np.uint32)
    return _v4(s) & is_syn(s) & (s["tcp_seq"].astype(np.uint32) == d)


def _nmap(s: Probes) -> Arr:
    return (
        is_syn(s)
        & np.isin(s["tcp_window"], NMAP_WINDOWS)
        & (s["tcp_opt_kinds"] == MSS_ONLY)
        & (s["tcp_mss"] == 1460)
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
    #: True: ``test`` only says the probe *can* match; the probes must also share
    #: one :func:`unicorn_value` (the scan detector keeps the first one per source)
    constant: bool = False


UNICORNSCAN = Fingerprint(
    "unicornscan", "seq ^ dst ^ ((dport << 16) + sport) constant", _unicorn_candidate, constant=True
)

#: in order of preference when several tools match every probe
TOOLS: tuple[Fingerprint, ...] = (
    Fingerprint("masscan", "ip_id == (dst ^ dport ^ seq) & 0xFFFF", _masscan),
    Fingerprint("mirai", "seq == dst", _mirai),
    Fingerprint("zmap", "ip_id == 54321", _zmap),
    Fingerprint("nmap", "SYN, window 1024..4096, MSS 1460 only, TTL 5-59", _nmap),
    UNICORNSCAN,
)


def tool_matches(samples: Any) -> npt.NDArray[np.bool_]:
    """(len(samples), len(TOOLS)) boolean: which per-probe tests each sample passes.

    ``samples``: a sample array or anything indexable by field name (``Fields``).
    """
    out = np.zeros((len(samples), len(TOOLS)), dtype=bool)
    for j, fp in enumerate(TOOLS):
        out[:, j] = fp.test(samples)
    return out
