"""Fast path of the frame decoder for the shapes that make up nearly all telescope traffic.

Theory of operation: scanners and backscatter are Ethernet frames, untagged or
with one or two 802.1Q/802.1ad tags, carrying IPv4 without options (IHL 5, not a later
fragment) and a whole TCP, UDP or ICMP (non-error) header. For such a frame
every output field is a fixed byte of two fixed-size windows: a link window at
the frame start and an IP window (IPv4 header + 20 transport bytes) at the IP
header. Both are gathered once per block; the few derived bytes (fragment
flags, TCP data offset, layers, IP version) are written into unused columns of
the IP window (IP checksum, TOS), the fields that do not apply to a row's
protocol are zeroed there, and then one structured assignment per window copies
all big-endian fields into the output rows at once (numpy byte-swaps them and
works through the rows in small cache-resident pieces).

Every other frame -- other link layers, deeper tag stacks, IPv6, IP options,
fragments, truncated headers, ICMP errors with their quotes, other protocols --
is reported back as "slow" and decoded by the general path
(:mod:`sensor.decode`), which gives the same fields for the fast shapes; the
differential tests check both against tshark. TCP options of fast rows are
handed back too: their walk is the general one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensor.decode_tables import (
    ETH_HDR,
    ETHERTYPE_IPV4,
    ICMP4_ERRORS,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VLAN_TPIDS,
)
from sensor.fields import LAYER_IP, LAYER_TRANSPORT, PAYLOAD_HEAD

__all__ = ["FAST_IP_WINDOW", "FAST_LINK_WINDOW", "FastResult", "fast_ethernet_ipv4", "payload_heads"]

I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]

#: bytes gathered at the frame start: Ethernet header and up to two VLAN tags (802.1ad QinQ)
FAST_LINK_WINDOW = 24
#: bytes gathered at the IP header: IPv4 without options and 20 transport bytes
FAST_IP_WINDOW = 40

# Columns of the IP window (RFC 791 header, then the transport header at 20).
# The checksum (10, 11) and TOS (1) bytes are not output fields; the fast path
# stores derived bytes there so that one structured copy writes them too.
_COL_FRAG_FLAGS = 1  # (in TOS) flags >> 5
_COL_HDR_LEN = 10  # (in checksum) TCP data offset in bytes
_COL_LAYERS = 11  # (in checksum) LAYER_IP | LAYER_TRANSPORT
# TCP checksum and urgent pointer (36..39; UDP/ICMP payload bytes) are not output fields either
_COL_PAYLOAD_LEN = 36  # big-endian uint16
_COL_PAYLOAD_CAP = 38

#: the IP window as output fields: name -> (format, column)
_IP_FIELDS = {
    "frag_flags": ("u1", _COL_FRAG_FLAGS),
    "ip_len": (">u2", 2),
    "ip_id": (">u2", 4),
    "ttl": ("u1", 8),
    "protocol": ("u1", 9),
    "tcp_hdr_len": ("u1", _COL_HDR_LEN),
    "layers": ("u1", _COL_LAYERS),
    "src_ip4": (">u4", 12),
    "dst_ip4": (">u4", 16),
    "src_port": (">u2", 20),
    "dst_port": (">u2", 22),
    "tcp_seq": (">u4", 24),
    "tcp_ack": (">u4", 28),
    "tcp_flags": (">u2", 32),  # data offset nibble cleared first
    "tcp_window": (">u2", 34),
    "payload_len": (">u2", _COL_PAYLOAD_LEN),
    "payload_cap": ("u1", _COL_PAYLOAD_CAP),
}
_IP_DTYPE = np.dtype({"names": list(_IP_FIELDS), "formats": [f for f, _ in _IP_FIELDS.values()],
                      "offsets": [c for _, c in _IP_FIELDS.values()], "itemsize": FAST_IP_WINDOW})
#: the link window as output fields (bytes 4, 5 cleared so that 4..11 is the source MAC)
_LINK_FIELDS = {"src_mac": (">u8", 4), "vlan": (">u2", ETH_HDR)}
_LINK_DTYPE = np.dtype({"names": list(_LINK_FIELDS), "formats": [f for f, _ in _LINK_FIELDS.values()],
                        "offsets": [c for _, c in _LINK_FIELDS.values()],
                        "itemsize": FAST_LINK_WINDOW})

_ETHERTYPE_IPV4_BE = int.from_bytes(ETHERTYPE_IPV4.to_bytes(2, "big"), "little")
_VLAN_TPIDS_BE = tuple(int.from_bytes(t.to_bytes(2, "big"), "little") for t in VLAN_TPIDS)
_ICMP4_ERROR_TABLE = np.zeros(256, dtype=bool)
_ICMP4_ERROR_TABLE[list(ICMP4_ERRORS)] = True
#: byte-swapped ethertype -> is a VLAN TPID (one table gather instead of three compares)
_IS_TPID = np.zeros(1 << 16, dtype=bool)
_IS_TPID[list(_VLAN_TPIDS_BE)] = True
#: IP bytes (header + transport) a fast row needs, by protocol: 20 + a whole TCP header,
#: a UDP header, an ICMP header; other protocols never take the fast path
_NEED = np.full(256, 1 << 20, dtype=np.int64)
_NEED[[IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP]] = (40, 28, 28)
#: row k: the first k of PAYLOAD_HEAD bytes kept (0xFF), the rest cleared
_HEAD_MASK = ((np.arange(PAYLOAD_HEAD)[None, :] < np.arange(PAYLOAD_HEAD + 1)[:, None]) * 0xFF
              ).astype(np.uint8)


def payload_heads(u8: npt.NDArray[np.uint8], start: I64,
                  count: npt.NDArray[np.integer]) -> npt.NDArray[np.void]:
    """``count`` (0..PAYLOAD_HEAD) bytes at each of ``start`` as zero-padded ``V<PAYLOAD_HEAD>`` values.

    ``u8`` must hold PAYLOAD_HEAD readable bytes after every start (the decoder's pad).
    """
    v = np.ndarray((u8.size - PAYLOAD_HEAD + 1,), dtype=f"V{PAYLOAD_HEAD}", buffer=u8, offset=0,
                   strides=(1,))
    h = v[start].view(np.uint8).reshape(-1, PAYLOAD_HEAD)
    h &= _HEAD_MASK[count]
    return h.view(f"V{PAYLOAD_HEAD}")[:, 0]


class FastResult:
    """What the general path still has to do for a block the fast path has written.

    ``slow``: rows to decode with the general path (their output rows hold
    garbage and must be overwritten whole). ``opt_rows``/``opt_start``/
    ``opt_end``: fast TCP rows with options, and where the options lie.
    """

    __slots__ = ("opt_end", "opt_rows", "opt_start", "slow")

    def __init__(self, slow: Idx, opt_rows: Idx, opt_start: I64, opt_end: I64) -> None:
        self.slow, self.opt_rows, self.opt_start, self.opt_end = slow, opt_rows, opt_start, opt_end


def fast_ethernet_ipv4(out: npt.NDArray[np.void], u8: npt.NDArray[np.uint8], off: I64,
                       end: I64, min_fast: float = 0.5) -> FastResult | None:
    """Decode the fast-shaped Ethernet frames of one block into ``out`` (zeroed rows).

    Returns None, having written nothing, when fewer than ``min_fast`` of the
    rows have the fast shape (the general path is then cheaper on its own).
    ``u8`` must hold :data:`sensor.decode.DECODE_PAD` readable bytes after every frame.
    """
    n = off.size
    lv = np.ndarray((u8.size - FAST_LINK_WINDOW + 1,), dtype=f"V{FAST_LINK_WINDOW}", buffer=u8,
                    offset=0, strides=(1,))
    lw = lv[off].view(np.uint8).reshape(n, FAST_LINK_WINDOW)
    # ethertypes (byte-swapped: compared with swapped constants) after 0, 1 and 2 tags
    et = lw[:, 12:14].view("<u2")[:, 0]
    et1 = lw[:, 16:18].view("<u2")[:, 0]
    tagged = _IS_TPID[et]
    tagged2 = tagged & _IS_TPID[et1]
    # a tag's TPID is never the IPv4 ethertype, so the three cases are exclusive
    et2 = lw[:, 20:22].view("<u2")[:, 0]
    ip4 = (et == _ETHERTYPE_IPV4_BE) | (tagged & ((et1 == _ETHERTYPE_IPV4_BE)
                                                  | (tagged2 & (et2 == _ETHERTYPE_IPV4_BE))))
    p = off + ETH_HDR + ((tagged.view(np.uint8) + tagged2.view(np.uint8)) << 2)
    iv = np.ndarray((u8.size - FAST_IP_WINDOW + 1,), dtype=f"V{FAST_IP_WINDOW}", buffer=u8,
                    offset=0, strides=(1,))
    w = iv[p].view(np.uint8).reshape(n, FAST_IP_WINDOW)
    # IP bytes present: min(captured, total length); total length 0 (TSO) is left to the general path
    room = np.minimum(end - p, w[:, 2:4].view(">u2")[:, 0])
    proto = w[:, 9]
    tcp = proto == IPPROTO_TCP
    icmp = proto == IPPROTO_ICMP
    # not a later fragment: offset bits 0 (MF may be set: a first fragment carries the ports)
    first = (w[:, 6:8].view("<u2")[:, 0] & 0xFF1F) == 0
    fast = ip4 & (w[:, 0] == 0x45) & first & (room >= _NEED[proto])
    # (a > b is a and not b) TCP data offset below 5 words; ICMP errors (their quotes)
    fast = fast > (tcp & (w[:, 32] < 0x50))
    fast = fast > (icmp & _ICMP4_ERROR_TABLE[w[:, 20]])
    nfast = int(np.count_nonzero(fast))
    if nfast < min_fast * n:
        return None
    slow = np.flatnonzero(~fast)

    # derived bytes into unused columns; fields foreign to a row's protocol zeroed
    w[:, _COL_FRAG_FLAGS] = w[:, 6] >> 5
    w[:, _COL_LAYERS] = LAYER_IP | LAYER_TRANSPORT
    udp = proto == IPPROTO_UDP
    ulen = w[:, 24:26].view(">u2")[:, 0].astype(np.int32)  # (read before the zeroing below)
    not_tcp = np.flatnonzero(~tcp)
    if not_tcp.size:
        w[not_tcp, 24:36] = 0
    icmp_rows = np.flatnonzero(icmp & fast)
    if icmp_rows.size:
        out["icmp_type"][icmp_rows] = w[icmp_rows, 20]
        out["icmp_code"][icmp_rows] = w[icmp_rows, 21]
        w[icmp_rows, 20:24] = 0
    doff = (w[:, 32] >> 2) & 0x3C  # 0 in rows not TCP (zeroed above)
    w[:, _COL_HDR_LEN] = doff
    w[:, 32] &= 0x0F
    # payload: as declared (UDP length - 8, IP total length - 20 - data offset), and its
    # first bytes as captured inside the IP datagram
    hdr = np.where(udp, 8, doff).astype(np.int32)
    plen = np.where(udp, ulen - 8, np.where(tcp, w[:, 2:4].view(">u2")[:, 0] - 20 - hdr, 0))
    np.maximum(plen, 0, out=plen)
    cap = np.minimum(np.minimum(plen, room - 20 - hdr), PAYLOAD_HEAD)
    np.maximum(cap, 0, out=cap)
    w[:, _COL_PAYLOAD_LEN:_COL_PAYLOAD_LEN + 2].view(">u2")[:, 0] = plen
    w[:, _COL_PAYLOAD_CAP] = cap
    out[list(_IP_FIELDS)] = w.view(_IP_DTYPE)[:, 0]
    out["ip_version"] = 4
    has = np.flatnonzero(fast & (cap > 0))
    if has.size:
        out["payload_head"][has] = payload_heads(u8, p[has] + 20 + hdr[has], cap[has])

    lw[:, 4:6].view("<u2")[:, 0] = 0
    keep = -tagged.view(np.uint8)  # 0xFF where tagged, 0 where not: the VLAN ID or 0
    lw[:, 14] &= keep & 0x0F
    lw[:, 15] &= keep
    out[list(_LINK_FIELDS)] = lw.view(_LINK_DTYPE)[:, 0]

    opts = fast & (doff > 20) & tcp
    opt_rows = np.flatnonzero(opts)
    t = p[opt_rows] + 20  # the TCP header; its options follow its first 20 bytes
    # options cut by the snap length (or the IP length) are read as far as they go
    opt_end = np.minimum(t + doff[opt_rows], p[opt_rows] + room[opt_rows])
    return FastResult(slow, opt_rows, t + 20, opt_end)
