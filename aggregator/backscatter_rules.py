"""Which flow tuples are DoS backscatter, and who the victim is.

Theory of operation (DOMAIN.md section 3, corsaro3
``corsaro_is_backscatter_packet``, Moore et al. 2006): a victim of a
spoofed-source flood answers the spoofed addresses, some of which are dark.
Backscatter is TCP SYN-ACK or RST (any RST), ICMP echo reply (0) and the ICMP
types 3, 4, 5, 11, 12, 14, 16, 18; for IPv6, ICMPv6 errors 1-4 and echo reply
129. UDP is never backscatter (a UDP "reply" cannot be told from a probe).

The victim is the packet's source -- except for ICMP errors (IPv4 3, 4, 5, 11,
12; ICMPv6 1-4): they come from a router or host near the victim and quote
the attacking packet, whose destination is the victim and whose protocol
decides the attack vector; the attacked port is the quoted destination port.
For SYN-ACK and RST the attacked port is the packet's source port. An ICMP
error whose quote was cut before the destination cannot name a victim and is
counted, not used.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["ICMP4_ERRORS", "ICMP4_TYPES", "ICMP6_ERRORS", "ICMP6_TYPES", "classify_backscatter"]

ICMP4_TYPES: Final = (0, 3, 4, 5, 11, 12, 14, 16, 18)
ICMP4_ERRORS: Final = (3, 4, 5, 11, 12)
ICMP6_TYPES: Final = (1, 2, 3, 4, 129)
ICMP6_ERRORS: Final = (1, 2, 3, 4)
_SYN, _RST, _ACK = 0x02, 0x04, 0x10


def classify_backscatter(
    flows: npt.NDArray[np.void],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(is_backscatter, is_icmp_error) per flow tuple."""
    proto = flows["protocol"]
    flags = flows["tcp_flags"]
    tcp_bs = (proto == 6) & ((((flags & _SYN) != 0) & ((flags & _ACK) != 0)) | ((flags & _RST) != 0))
    bs = tcp_bs
    err = np.zeros(proto.shape[0], dtype=bool)
    icmp = np.flatnonzero((proto == 1) | (proto == 58))
    if icmp.size:
        # only the ICMP rows: table lookups by type, the version deciding the table
        itype = np.minimum(flows["src_port"][icmp], 255)
        v6 = (proto[icmp] == 58) & (flows["ip_version"][icmp] != 4)
        v4 = (proto[icmp] == 1) & (flows["ip_version"][icmp] == 4)
        bs = bs.copy()
        bs[icmp] = (v4 & _BS4[itype]) | (v6 & _BS6[itype])
        err[icmp] = (v4 & _ERR4[itype]) | (v6 & _ERR6[itype])
    return bs, err


def _table(types: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    t = np.zeros(256, dtype=bool)
    t[list(types)] = True
    return t


_BS4, _ERR4 = _table(ICMP4_TYPES), _table(ICMP4_ERRORS)
_BS6, _ERR6 = _table(ICMP6_TYPES), _table(ICMP6_ERRORS)
