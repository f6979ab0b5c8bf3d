"""Fast path of the frame decoder for the shapes that make up nearly all telescope traffic.

Theory of operation: scanners and backscatter are Ethernet frames, untagged or
with one or two 802.1Q/802.1ad tags, carrying IPv4 without options (IHL 5, not a later
fragment) and a whole TCP, UDP or ICMP header. For such a frame every output
field is a fixed byte of two fixed-size windows: a link window at the frame
start and an IP window (IPv4 header + 20 transport bytes + 8 scratch bytes) at
the IP header. Both are gathered once per block; derived bytes are written into
columns of the IP window that are not output fields, the fields that do not
apply to a row's protocol are zeroed there, and then one structured assignment
per window copies the big-endian fields into the output rows (numpy byte-swaps
them). That copy costs per field, so runs of one-byte output fields are
assembled into one wider field (see ``_HEAD8``). The block's output rows are
zeroed just before that copy: zeroed long before (the whole batch at once),
they have left the cache again, and the copy would wait for each of them.
The few rows with a payload (UDP, TCP with data) get its length and first
bytes as a subset.

TCP options are matched by *layout* (:func:`match_option_layouts`) while the
block's output rows are still in cache: a stack or a scanner sends the same
option layout every time, only values such as timestamps change.

Every other frame -- other link layers, deeper tag stacks, IPv6, IP options,
fragments, truncated headers, other protocols -- is reported back as "slow" and
decoded by the general path (:mod:`sensor.decode`), which gives the same fields
for the fast shapes; the differential tests check both against tshark. TCP
options of a layout not seen before, and the headers ICMP errors quote, are
handed back too: the general path's functions read them, once for all blocks.
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
    TCPOPT_EOL,
    TCPOPT_MSS,
    TCPOPT_NOP,
    VLAN_TPIDS,
)
from sensor.fields import LAYER_IP, LAYER_TRANSPORT, PACKET_DTYPE, PAYLOAD_HEAD

__all__ = ["FAST_IP_WINDOW", "FAST_LINK_WINDOW", "FastResult", "fast_ethernet_ipv4", "match_option_layouts",
           "payload_heads"]

I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]

#: bytes gathered at the frame start: Ethernet header and up to two VLAN tags (802.1ad QinQ)
FAST_LINK_WINDOW = 24
#: bytes gathered at the IP header: IPv4 without options, 20 transport bytes, 8 scratch bytes
FAST_IP_WINDOW = 48

# The IP window: the RFC 791 header, the transport header at 20, then 8 bytes the fast path
# overwrites (see below). Its big-endian fields go to the output rows in one structured copy
# (numpy byte-swaps them), and that copy costs per field: a one-byte field as much as two
# wider ones. So adjacent output bytes are written as one wider field, assembled in the
# window such that the byte swap puts each byte where the output wants it: the 8 bytes from
# ``layers`` to ``frag_offset``, and the 4 from ``tcp_hdr_len`` to ``inner_ip_version``.
_COL_HEAD8 = 40  # (scratch) frag_offset, frag_flags, ttl, protocol, ip_version, status, layers
_COL_HEAD4 = 36  # (TCP checksum, urgent pointer) inner_ip_version, icmp_code, icmp_type, tcp_hdr_len
#: the output fields the 8 and 4 bytes hold, in output order
_HEAD8 = ("layers", "status", "ip_version", "protocol", "ttl", "frag_flags", "frag_offset")
_HEAD4 = ("tcp_hdr_len", "icmp_type", "icmp_code", "inner_ip_version")
#: the 8 bytes' value with every derived byte 0: ip_version 4 and layers IP | transport
_HEAD8_CONST = np.uint64((4 << 40) | ((LAYER_IP | LAYER_TRANSPORT) << 56))


def _offset(name: str) -> int:
    return int(PACKET_DTYPE.fields[name][1])  # type: ignore[index]


def _check_runs(*runs: tuple[str, ...]) -> None:
    for run in runs:
        at = _offset(run[0])
        for name in run:
            if _offset(name) != at:
                raise AssertionError(f"PACKET_DTYPE: {run} are no longer adjacent in this order")
            at += PACKET_DTYPE[name].itemsize


_check_runs(_HEAD8, _HEAD4)
#: window field -> (format, column in the window, output field it lands on as <format>)
_IP_FIELDS = {
    "head8": (">u8", _COL_HEAD8, "layers", "<u8"),
    "ip_len": (">u2", 2, "ip_len", "<u4"),
    "ip_id": (">u2", 4, "ip_id", "<u4"),
    "src_ip4": (">u4", 12, "src_ip4", "<u4"),
    "dst_ip4": (">u4", 16, "dst_ip4", "<u4"),
    "src_port": (">u2", 20, "src_port", "<u2"),
    "dst_port": (">u2", 22, "dst_port", "<u2"),
    "tcp_seq": (">u4", 24, "tcp_seq", "<u4"),
    "tcp_ack": (">u4", 28, "tcp_ack", "<u4"),
    "tcp_flags": (">u2", 32, "tcp_flags", "<u2"),  # data offset nibble cleared first
    "tcp_window": (">u2", 34, "tcp_window", "<u2"),
    "head4": (">u4", _COL_HEAD4, "tcp_hdr_len", "<u4"),
}
_IP_DTYPE = np.dtype({"names": list(_IP_FIELDS), "formats": [f[0] for f in _IP_FIELDS.values()],
                      "offsets": [f[1] for f in _IP_FIELDS.values()], "itemsize": FAST_IP_WINDOW})
#: the output rows seen with the same field names (a view of PACKET_DTYPE rows)
_OUT_IP = np.dtype({"names": list(_IP_FIELDS), "formats": [f[3] for f in _IP_FIELDS.values()],
                    "offsets": [_offset(f[2]) for f in _IP_FIELDS.values()],
                    "itemsize": PACKET_DTYPE.itemsize})
_IP_NAMES = list(_IP_FIELDS)
#: the link window as output fields (bytes 4, 5 cleared so that 4..11 is the source MAC)
_LINK_FIELDS = {"src_mac": (">u8", 4), "vlan": (">u2", ETH_HDR)}
_LINK_DTYPE = np.dtype({"names": list(_LINK_FIELDS), "formats": [f for f, _ in _LINK_FIELDS.values()],
                        "offsets": [c for _, c in _LINK_FIELDS.values()],
                        "itemsize": FAST_LINK_WINDOW})

_ETHERTYPE_IPV4_BE = int.from_bytes(ETHERTYPE_IPV4.to_bytes(2, "big"), "little")
_VLAN_TPIDS_BE = tuple(int.from_bytes(t.to_bytes(2, "big"), "little") for t in VLAN_TPIDS)
_ICMP4_ERROR_TABLE = np.zeros(256, dtype=bool)
_ICMP4_ERROR_TABLE[list(ICMP4_ERRORS)] = True
#: byte-swapped ethertype -> 0 IPv4, 1 a VLAN TPID, 2 anything else; the same shifted left
#: by 2 and 4 bits for the ethertypes after one and two tags, so that one OR of three
#: table gathers gives a 6-bit key of the frame's shape
_ET_CODE = np.full(1 << 16, 2, dtype=np.uint8)
_ET_CODE[_ETHERTYPE_IPV4_BE] = 0
_ET_CODE[list(_VLAN_TPIDS_BE)] = 1
_ET_CODE1 = _ET_CODE << 2
_ET_CODE2 = _ET_CODE << 4
#: that key -> where the IPv4 header starts (after 0, 1 or 2 tags); 0: not IPv4 within two tags
_IP_AT = np.zeros(64, dtype=np.uint8)
for _k in range(64):
    _c0, _c1, _c2 = _k & 3, (_k >> 2) & 3, _k >> 4
    if _c0 == 0:
        _IP_AT[_k] = ETH_HDR
    elif _c0 == 1 and _c1 == 0:
        _IP_AT[_k] = ETH_HDR + 4
    elif _c0 == 1 and _c1 == 1 and _c2 == 0:
        _IP_AT[_k] = ETH_HDR + 8
#: IP bytes (header + transport) a fast row needs, by protocol: 20 + a whole TCP header,
#: a UDP header, an ICMP header; other protocols never take the fast path
_NEED = np.full(256, 1 << 20, dtype=np.int64)
_NEED[[IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP]] = (40, 28, 28)
#: row k: the first k of PAYLOAD_HEAD bytes kept (0xFF), the rest cleared
_HEAD_MASK = ((np.arange(PAYLOAD_HEAD)[None, :] < np.arange(PAYLOAD_HEAD + 1)[:, None]) * 0xFF
              ).astype(np.uint8)


class _Layout:
    """One TCP option layout: the option-list length, the (column, byte) pairs that fix
    its walk -- each option's kind and length bytes, the EOL that ends it -- as masks
    and values of the 5 little-endian uint64 words of a 40-byte window, the packed
    kinds it gives and the column of the MSS value (-1: none)."""

    __slots__ = ("checks", "hits", "kinds", "mss_col", "size", "words")

    def __init__(self, size: int, checks: tuple[tuple[int, int], ...], kinds: int, mss_col: int) -> None:
        self.size, self.checks, self.kinds, self.mss_col, self.hits = size, checks, kinds, mss_col, 0
        mask = np.zeros(40, dtype=np.uint8)
        want = np.zeros(40, dtype=np.uint8)
        for c, v in checks:
            mask[c], want[c] = 0xFF, v
        masks, wants = mask.view("<u8").tolist(), want.view("<u8").tolist()
        self.words = [(j, np.uint64(m), np.uint64(v))
                      for j, (m, v) in enumerate(zip(masks, wants, strict=True)) if m]


def _option_layout(b: bytes) -> _Layout | None:
    """The layout of one option list ``b``; None when it is malformed (the general walk
    handles those). Rows with the same length and these bytes walk identically."""
    i, count, kinds, mss_col = 0, 0, 0, -1
    checks: list[tuple[int, int]] = []
    while i < len(b):
        kind = b[i]
        checks.append((i, kind))
        if kind == TCPOPT_EOL:
            break
        if count < 8:
            kinds |= kind << (8 * count)
        count += 1
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 2 > len(b) or b[i + 1] < 2 or i + b[i + 1] > len(b):
            return None
        checks.append((i + 1, b[i + 1]))
        if kind == TCPOPT_MSS and b[i + 1] == 4 and mss_col < 0:
            mss_col = i + 2
        i += b[i + 1]
    return _Layout(len(b), tuple(checks), kinds, mss_col)


#: layouts learnt so far, most hits first (a tuple, replaced whole: readers never see it change)
_LAYOUTS: tuple[_Layout, ...] = ()
#: how many layouts are kept; a new one replaces the one with the fewest hits
MAX_LAYOUTS = 16
#: layouts compared per call at most (known ones, most hits first, then new ones): traffic
#: of many layouts must not cost a compare per layout and row; the rest take the walk
MAX_COMPARES = 6
#: a row whose layout matched (option lengths are at most 40)
_MATCHED = np.uint64(1 << 63)


def _learn(lay: _Layout, hits: int) -> None:
    global _LAYOUTS
    lay.hits = hits
    kept = sorted(_LAYOUTS, key=lambda x: -x.hits)[:MAX_LAYOUTS - 1]
    for old in kept:
        old.hits //= 2  # older counts fade, so that a layout gone out of use is dropped
    _LAYOUTS = tuple(sorted([*kept, lay], key=lambda x: -x.hits))


def match_option_layouts(w: npt.NDArray[np.uint8], size: npt.NDArray[np.integer]
                         ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Packed kinds, MSS and "not matched" per row of option bytes ``w`` (rows of 40
    bytes; ``size`` of them are the options).

    Rows are compared with the layouts learnt so far, most used first, and new
    layouts are learnt from the first rows left (MAX_COMPARES compares in all).
    Rows of a layout too rare to pay for a compare, and malformed lists, are
    left (True) for the general walk, which gives the same result.
    """
    global _LAYOUTS
    n = size.size
    # per row its option length, then _MATCHED once a layout matched it (a value no
    # length has, so matched rows drop out of the later compares at no extra cost)
    key0 = np.minimum(size, 40).astype(np.uint64)
    key, idx = key0, np.arange(n)  # the rows compared (fewer once many have matched)
    kinds = np.zeros(n, dtype=np.uint64)
    mss = np.zeros(n, dtype=np.int64)
    left, compares = n, 0
    known = list(_LAYOUTS)
    seen = {(x.size, x.checks) for x in known}
    # known layouts are tried while rows are left; new ones are looked for among 16 or more
    while left and compares < MAX_COMPARES and (known or left >= 16):
        compares += 1
        if left * 2 < key.size:
            if key is not key0:
                key0[idx] = key
            live = np.flatnonzero(key != _MATCHED)
            idx, key, w = idx[live], key[live], w[live]
        w64 = w.view("<u8")
        new = not known
        if known:
            lay: _Layout | None = known.pop(0)
        else:
            i = int(np.argmax(key != _MATCHED))  # the first row not matched yet
            lay = _option_layout(w[i, :int(key[i])].tobytes())
            if lay is None or (lay.size, lay.checks) in seen:
                break
            seen.add((lay.size, lay.checks))
        assert lay is not None
        diff = key ^ np.uint64(lay.size)
        for j, mk, wv in lay.words:
            diff |= (w64[:, j] & mk) ^ wv
        hit = np.flatnonzero(diff == 0)
        if new:
            if hit.size * 16 < left:
                break  # a rare layout: the rows left are too varied for this to pay
            _learn(lay, hit.size)
        else:
            lay.hits += hit.size
        if not hit.size:
            continue
        at = idx[hit] if key is not key0 else hit
        kinds[at] = lay.kinds
        if lay.mss_col >= 0:
            mss[at] = w[:, lay.mss_col:lay.mss_col + 2].view(">u2")[:, 0][hit]
        key[hit] = _MATCHED
        left -= hit.size
    if key is not key0:
        key0[idx] = key
    order = tuple(sorted(_LAYOUTS, key=lambda x: -x.hits))
    if order != _LAYOUTS:
        _LAYOUTS = order
    return kinds, mss, key0 != _MATCHED


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
    ``opt_end``: fast TCP rows whose options (there) have a layout not known
    yet. ``quote_rows``/``quote_start``/``quote_end``: ICMP errors, and where
    the header they quote lies (up to the end of the IP datagram).
    """

    __slots__ = ("opt_end", "opt_rows", "opt_start", "quote_end", "quote_rows", "quote_start", "slow")

    def __init__(self, slow: Idx, opt_rows: Idx, opt_start: I64, opt_end: I64, quote_rows: Idx,
                 quote_start: I64, quote_end: I64) -> None:
        self.slow, self.opt_rows, self.opt_start, self.opt_end = slow, opt_rows, opt_start, opt_end
        self.quote_rows, self.quote_start, self.quote_end = quote_rows, quote_start, quote_end


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
    # ethertypes (byte-swapped: looked up in swapped tables) after 0, 1 and 2 tags
    shape = _ET_CODE[lw[:, 12:14].view("<u2")[:, 0]]
    shape |= _ET_CODE1[lw[:, 16:18].view("<u2")[:, 0]]
    shape |= _ET_CODE2[lw[:, 20:22].view("<u2")[:, 0]]
    at = _IP_AT[shape]
    ip4 = at.astype(bool)
    p = off + at
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
    # (a > b is a and not b) TCP data offset below 5 words
    fast = fast > (tcp & (w[:, 32] < 0x50))
    nfast = int(np.count_nonzero(fast))
    if nfast < min_fast * n:
        return None
    slow = np.flatnonzero(~fast)
    # ICMP errors: the header they quote follows the ICMP header (8 bytes)
    icmp_rows = np.flatnonzero(icmp & fast)
    quote_rows = icmp_rows[_ICMP4_ERROR_TABLE[w[icmp_rows, 20]]]
    quote_start = p[quote_rows] + 28
    quote_end = quote_start + room[quote_rows] - 28

    # derived bytes into unused columns; fields foreign to a row's protocol zeroed
    h8 = w[:, _COL_HEAD8:_COL_HEAD8 + 8]
    h8.view("<u8")[:, 0] = _HEAD8_CONST
    h8[:, 2] = w[:, 6] >> 5  # frag_flags
    h8[:, 3] = w[:, 8]  # ttl
    h8[:, 4] = proto
    doff = (w[:, 32] >> 2) & 0x3C  # (not a TCP data offset in rows not TCP: zeroed below)
    udp = proto == IPPROTO_UDP
    tot = w[:, 2:4].view(">u2")[:, 0]
    # the rows with a payload (UDP: the header says; TCP: the IP length says), before the zeroing
    pay = np.flatnonzero(fast & (udp | (tcp & (tot > doff + 20))))
    pay_w = w[pay]
    not_tcp = np.flatnonzero(~tcp)
    if not_tcp.size:
        w[not_tcp, 24:36] = 0
        doff[not_tcp] = 0
    w[:, _COL_HEAD4:_COL_HEAD4 + 4].view(">u4")[:, 0] = doff  # tcp_hdr_len; 0 for the rest
    if icmp_rows.size:
        w[icmp_rows, _COL_HEAD4 + 1:_COL_HEAD4 + 3] = w[icmp_rows, 21:19:-1]  # code, type
        w[icmp_rows, 20:24] = 0
    w[:, 32] &= 0x0F
    out.view(np.uint8)[:] = 0
    out.view(_OUT_IP)[_IP_NAMES] = w.view(_IP_DTYPE)[:, 0]
    # writes to a subset of the rows, now that the copy above has brought the rows into cache
    if pay.size:
        _payloads(out, u8, pay_w, p[pay], room[pay], doff[pay], udp[pay], pay)

    lw[:, 4:6].view("<u2")[:, 0] = 0
    keep = -(at > ETH_HDR).view(np.uint8)  # 0xFF where tagged, 0 where not: the VLAN ID or 0
    lw[:, 14] &= keep & 0x0F
    lw[:, 15] &= keep
    out[list(_LINK_FIELDS)] = lw.view(_LINK_DTYPE)[:, 0]

    opt_rows = np.flatnonzero(fast & (doff > 20))  # (doff is 0 in rows not TCP)
    po = p[opt_rows]
    o = po + 40  # the options follow the IP header and the first 20 bytes of the TCP header
    # options cut by the snap length (or the IP length) are read as far as they go
    oend = np.minimum(po + 20 + doff[opt_rows], po + room[opt_rows])
    if opt_rows.size:
        ov = np.ndarray((u8.size - 40 + 1,), dtype="V40", buffer=u8, offset=0, strides=(1,))
        kinds, mss, todo = match_option_layouts(ov[o].view(np.uint8).reshape(-1, 40), oend - o)
        # (rows left are 0 here: the general walk writes them later)
        out["tcp_opt_kinds"][opt_rows] = kinds
        out["tcp_mss"][opt_rows] = mss
        left = np.flatnonzero(todo)
        opt_rows, o, oend = opt_rows[left], o[left], oend[left]
    return FastResult(slow, opt_rows, o, oend, quote_rows, quote_start, quote_end)


def _payloads(out: npt.NDArray[np.void], u8: npt.NDArray[np.uint8], w: npt.NDArray[np.uint8], p: I64,
              room: I64, doff: npt.NDArray[np.uint8], udp: npt.NDArray[np.bool_], rows: Idx) -> None:
    """payload_len/cap/head of fast TCP/UDP ``rows`` (their IP windows ``w``, IP headers at ``p``):
    the length as declared (UDP length - 8, IP total length - 20 - data offset), and the
    first bytes as captured inside the IP datagram."""
    hdr = np.where(udp, 8, doff.astype(np.int64))
    plen = np.where(udp, w[:, 24:26].view(">u2")[:, 0].astype(np.int64) - 8,
                    w[:, 2:4].view(">u2")[:, 0] - 20 - hdr)
    np.maximum(plen, 0, out=plen)
    cap = np.minimum(plen, room - 20 - hdr)
    np.minimum(cap, PAYLOAD_HEAD, out=cap)
    np.maximum(cap, 0, out=cap)
    out["payload_len"][rows] = plen
    out["payload_cap"][rows] = cap
    has = np.flatnonzero(cap)
    if has.size:
        out["payload_head"][rows[has]] = payload_heads(u8, p[has] + 20 + hdr[has], cap[has])
