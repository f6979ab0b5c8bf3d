"""Vectorized frame decoder: a batch of raw frames -> one ``PACKET_DTYPE`` row each.

Theory of operation: no Python object per packet. The frames stay where they
are, in one uint8 buffer; the decoder keeps, per frame, the absolute position
of the current header and the end of the bytes that belong to it, and reads
each header field for the whole batch with one gather through a byte-strided
view (a big-endian uint16/uint32/16-byte view starting at every byte of the
buffer). Every layer first checks, per frame, that its header lies inside the
captured bytes and only then reads it, so a frame never reads past its own
end by more than a fixed slack. Rare shapes -- VLAN stacks, IPv6 extension
headers, TCP options, ICMP quotes -- are loops over the shrinking subset of
frames that still need them, each step vectorized.

Conventions of the output are in :mod:`sensor.fields`. A frame that cannot be
fully decoded keeps what was decoded before the problem; ``status`` says why
(truncation by the snap length inside an optional part -- TCP options, IPv4
options of a fragment, ICMP quotes -- is not a problem: ``layers`` tells).
Wire constants live in :mod:`sensor.decode_tables`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sensor.decode_fast import fast_ethernet_ipv4, match_option_layouts, payload_heads
from sensor.decode_tables import (
    AF_INET,
    AF_INET6_VALUES,
    ETH_HDR,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ICMP4_ERRORS,
    ICMP6_ERRORS,
    IPPROTO_AH,
    IPPROTO_FRAGMENT,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_EXT_HEADERS,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OLD,
    MAX_IPV6_EXT_HEADERS,
    QUOTE_PORT_PROTOCOLS,
    TCPOPT_EOL,
    TCPOPT_MSS,
    TCPOPT_NOP,
    VLAN_TPIDS,
)
from sensor.fields import (
    LAYER_INNER,
    LAYER_INNER_PORTS,
    LAYER_IP,
    LAYER_TRANSPORT,
    PACKET_DTYPE,
    PAYLOAD_HEAD,
    Status,
)

__all__ = ["DECODE_PAD", "decode_frames"]

I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]
Mask = npt.NDArray[np.bool_]
U8x2 = npt.NDArray[np.uint8]

#: bytes a frame may be read past its end (fixed-size reads before a length check);
#: callers that own the buffer keep this many readable bytes after the last frame
DECODE_PAD = 256
#: rows decoded together: large enough to amortise numpy's per-call cost, small
#: enough that the output rows and temporaries stay in the CPU cache
BLOCK_ROWS = 16384


class _Bytes:
    """Reads from one buffer: fields at any byte offset, and fixed-width windows.

    A *window* is ``width`` bytes copied from each of many positions into one
    ``(rows, width)`` block (one gather of a ``V<width>`` byte-strided view);
    header fields are then columns of it, read without further indexing.
    Single fields at scattered positions are gathered byte by byte, which
    numpy does faster than unaligned multi-byte gathers.
    """

    __slots__ = ("_views", "b32", "u8")

    def __init__(self, buf: npt.NDArray[np.uint8]) -> None:
        self.u8 = buf
        self.b32 = np.ndarray((buf.size - 3,), dtype=">u4", buffer=buf, offset=0, strides=(1,))
        self._views: dict[int, npt.NDArray[np.void]] = {}

    def win(self, pos: I64, width: int) -> U8x2:
        v = self._views.get(width)
        if v is None:
            v = np.ndarray((self.u8.size - width + 1,), dtype=f"V{width}", buffer=self.u8,
                           offset=0, strides=(1,))
            self._views[width] = v
        return v[pos].view(np.uint8).reshape(-1, width)

    def u8_(self, pos: I64) -> npt.NDArray[np.int64]:
        return self.u8[pos].astype(np.int64)

    def be16(self, pos: I64) -> npt.NDArray[np.int64]:
        return (self.u8[pos].astype(np.int64) << 8) | self.u8[pos + 1]

    def be32(self, pos: I64) -> npt.NDArray[np.int64]:
        return self.b32[pos].astype(np.int64)


def _c16(w: U8x2, k: int) -> npt.NDArray[np.int32]:
    """Big-endian uint16 at column ``k`` of a window, for arithmetic."""
    return w[:, k:k + 2].view(">u2")[:, 0].astype(np.int32)


def _v16(w: U8x2, k: int) -> npt.NDArray[np.uint16]:
    """The same as a view (no copy): for fields stored as they are."""
    return w[:, k:k + 2].view(">u2")[:, 0]


def _v32(w: U8x2, k: int) -> npt.NDArray[np.uint32]:
    return w[:, k:k + 4].view(">u4")[:, 0]


def _c32(w: U8x2, k: int) -> npt.NDArray[np.uint32]:
    return w[:, k:k + 4].view(">u4")[:, 0].astype(np.uint32)


def _a16(w: U8x2, k: int) -> npt.NDArray[np.void]:
    """16 bytes at column ``k`` (an IPv6 address) as ``V16``."""
    return np.ascontiguousarray(w[:, k:k + 16]).view("V16")[:, 0]


def _isin(values: npt.NDArray[np.int64], choices: tuple[int, ...]) -> Mask:
    m = values == choices[0]
    for c in choices[1:]:
        m |= values == c
    return m


class _Frames:
    """Per-batch working state: the output, per-frame status and layers."""

    def __init__(self, out: npt.NDArray[np.void], B: _Bytes, off: I64, end: I64) -> None:
        self.out = out
        self.B = B
        self.off = off
        self.end = end
        self.n = off.size
        self.status = np.zeros(self.n, dtype=np.uint8)
        self.layers = np.zeros(self.n, dtype=np.uint8)
        self.cols: dict[str, npt.NDArray[Any]] = {}
        self.written: set[str] = set()

    def put(self, name: str, rows: Idx, values: npt.ArrayLike) -> None:
        """``out[name][rows] = values``, through a contiguous column per field.

        Scattering into a column of the output rows costs several times
        a scatter into a plain array, so a subset of rows goes to a zeroed column
        first and every column is copied into the output once, by ``flush``.
        ``rows`` are sorted, so all rows means a plain copy.
        """
        if rows.size == self.n:
            self.out[name] = values
            self.cols.pop(name, None)
            self.written.add(name)
            return
        if not rows.size:
            return
        col = self.cols.get(name)
        if col is None:
            if rows.size * 8 < self.n:
                # a few rows: straight into the output
                self.out[name][rows] = values
                self.written.add(name)
                return
            # the block's rows start zeroed: copy them only when something was written already
            col = self.out[name].copy() if name in self.written else np.zeros(self.n, self.out.dtype[name])
            self.cols[name] = col
        col[rows] = values

    def flush(self) -> None:
        for name, col in self.cols.items():
            self.out[name] = col
        self.cols.clear()
        self.out["status"] = self.status
        self.out["layers"] = self.layers

    def set_status(self, rows: Idx, status: Status | npt.NDArray[np.integer]) -> None:
        if rows.size:
            self.status[rows] = status

    def mark(self, rows: Idx, mask: Mask, status: Status) -> None:
        """Status for ``rows[mask]`` (nothing to do, and no copy, in the usual all-clear case)."""
        if mask.any():
            self.status[rows[mask]] = status

    def take(self, a: I64, rows: Idx) -> I64:
        """``a[rows]`` -- without the gather when ``rows`` is every row of the block."""
        return a if rows.size == self.n else a[rows]

    def add_layer(self, rows: Idx, bit: int) -> None:
        if rows.size == self.n:
            self.layers |= bit
        elif rows.size:
            self.layers[rows] |= bit


# ----------------------------------------------------------------------------- link layer

def _vlan_walk(F: _Frames, rows: Idx, pos: I64, etype: npt.NDArray[np.signedinteger[Any]],
               w: U8x2, hdr: int) -> None:
    """Step over any depth of 802.1Q/802.1ad tags (updates pos, etype in place).

    The first tag usually lies inside the link window ``w`` (at column ``hdr``);
    deeper tags are gathered from the buffer.
    """
    tagged = _isin(etype, VLAN_TPIDS)
    if not tagged.any():
        return
    cur = np.flatnonzero(tagged)
    first = True
    while cur.size:
        fits = pos[cur] + 4 <= F.end[rows[cur]]
        if not fits.all():
            F.set_status(rows[cur[~fits]], Status.TRUNCATED_LINK)
            etype[cur[~fits]] = -1
            cur = cur[fits]
        p = pos[cur]
        if first and hdr + 4 <= w.shape[1]:
            wc = w[cur]
            F.put("vlan", rows[cur], _c16(wc, hdr) & 0x0FFF)
            etype[cur] = _c16(wc, hdr + 2)
        else:
            if first:
                F.put("vlan", rows[cur], F.B.be16(p) & 0x0FFF)
            etype[cur] = F.B.be16(p + 2)
        first = False
        pos[cur] = p + 4
        cur = cur[_isin(etype[cur], VLAN_TPIDS)]


def _mac48(w: U8x2, k: int) -> npt.NDArray[np.uint64]:
    return (_c16(w, k).astype(np.uint64) << np.uint64(32)) | _c32(w, k + 2).astype(np.uint64)


def _keep(mask: Mask, *arrays: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], ...]:
    """``a[mask]`` for each array, skipping the copies when every row is kept."""
    if mask.all():
        return arrays
    return tuple(a[mask] for a in arrays)


def _link(F: _Frames, rows: Idx, linktype: int) -> tuple[Idx, I64, npt.NDArray[np.int64]]:
    """Frames ``rows`` of one link type -> (rows that carry IP, L3 positions, IP version)."""
    B = F.B
    off = F.take(F.off, rows)
    end = F.take(F.end, rows)
    if linktype in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        hdr = {LINKTYPE_ETHERNET: ETH_HDR, LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20}[linktype]
        short = off + hdr > end
        if short.any():
            F.set_status(rows[short], Status.TRUNCATED_LINK)
            rows, off, end = rows[~short], off[~short], end[~short]
        w = B.win(off, 20)
        if linktype == LINKTYPE_ETHERNET:
            F.put("src_mac", rows, _mac48(w, 6))
            etype = _c16(w, 12)
        else:
            # cooked captures: the sender's link address, when it is a 6-byte Ethernet one
            if linktype == LINKTYPE_LINUX_SLL:
                etype, hatype, halen, addr = _c16(w, 14), _c16(w, 2), _c16(w, 4), 6
            else:
                etype, hatype, halen, addr = _c16(w, 0), _c16(w, 8), w[:, 11].astype(np.int64), 12
            eth = (hatype == 1) & (halen == 6)
            if eth.any():
                F.put("src_mac", rows[eth], _mac48(w[eth], addr))
        pos = off + hdr
        _vlan_walk(F, rows, pos, etype, w, hdr)
        version = np.where(etype == ETHERTYPE_IPV4, 4, np.where(etype == ETHERTYPE_IPV6, 6, 0))
        ip = version > 0
        if not ip.all():
            F.set_status(rows[~ip & (etype >= 0)], Status.NOT_IP)
            return rows[ip], pos[ip], version[ip]
        return rows, pos, version
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        short = off + 4 > end
        if short.any():
            F.set_status(rows[short], Status.TRUNCATED_LINK)
            rows, off, end = rows[~short], off[~short], end[~short]
        fam = B.be32(off)
        if linktype == LINKTYPE_NULL:
            # written in the capturing host's byte order: a family never exceeds 16 bits
            swapped = fam > 0xFFFF
            fam[swapped] = fam[swapped].astype(np.uint32).byteswap()
        version = np.where(fam == AF_INET, 4, np.where(_isin(fam, AF_INET6_VALUES), 6, 0))
        ip = version > 0
        F.set_status(rows[~ip], Status.NOT_IP)
        return rows[ip], (off + 4)[ip], version[ip]
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OLD):
        version = B.u8_(off) >> 4
        version[off >= end] = 4  # nothing captured: the IP layer reports the truncation
        bad = (version != 4) & (version != 6)
        if bad.any():
            F.set_status(rows[bad], Status.BAD_IP_HEADER)
            return rows[~bad], off[~bad], version[~bad]
        return rows, off, version
    if linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        return rows, off, np.full(rows.size, 4 if linktype == LINKTYPE_IPV4 else 6, dtype=np.int64)
    F.set_status(rows, Status.UNKNOWN_LINKTYPE)
    empty = np.zeros(0, dtype=np.int64)
    return rows[:0], empty, empty


# ----------------------------------------------------------------------------- IP layer

def _ext_walk(F: _Frames, q: I64, nh: I64, lim: I64, frag: tuple[I64, I64, I64]) -> Idx:
    """Walk IPv6 extension headers in place (``q``, ``nh``); return the indexes whose chain is cut.

    ``frag`` (offset, more-fragments, identification) receive the fragment
    header's fields. A chain stops at a non-first fragment: what follows is
    payload, not a header.
    """
    B = F.B
    cur = np.flatnonzero(_isin(nh, IPV6_EXT_HEADERS))
    failed: list[Idx] = []
    for _ in range(MAX_IPV6_EXT_HEADERS):
        if not cur.size:
            break
        fits = q[cur] + 8 <= lim[cur]
        if not fits.all():
            failed.append(cur[~fits])
            cur = cur[fits]
        p = q[cur]
        h = nh[cur]
        ln = B.u8_(p + 1)
        size = np.where(h == IPPROTO_FRAGMENT, 8, np.where(h == IPPROTO_AH, (ln + 2) * 4, (ln + 1) * 8))
        nh[cur] = B.u8_(p)
        q[cur] = p + size
        later = np.zeros(cur.size, dtype=bool)
        isfrag = h == IPPROTO_FRAGMENT
        if isfrag.any():
            fc = cur[isfrag]
            fo = B.be16(p[isfrag] + 2)
            frag[0][fc] = fo & 0xFFF8
            frag[1][fc] = fo & 1
            frag[2][fc] = B.be32(p[isfrag] + 4)
            later[isfrag] = (fo & 0xFFF8) > 0
        cur = cur[~later & _isin(nh[cur], IPV6_EXT_HEADERS)]
    if cur.size:
        failed.append(cur)
    return np.concatenate(failed) if failed else cur[:0]


class _Transport:
    """Rows that reached a transport header: its position, a 20-byte window of it,
    the end of the IP payload (captured: ``lim``; as the IP header declares it:
    ``dend``), the protocol, and whether it is inside IPv6."""

    __slots__ = ("dend", "lim", "proto", "rows", "t", "tw", "v6")

    def __init__(self, rows: Idx, t: I64, tw: U8x2, lim: I64, dend: I64, proto: I64, v6: bool) -> None:
        self.rows, self.t, self.tw, self.lim, self.proto, self.v6 = rows, t, tw, lim, proto, v6
        self.dend = dend


#: bytes of the IP window: an IPv6 header (or IPv4 without options) plus a TCP header
IP_WINDOW = 60
TW = 20


def _transport_window(B: _Bytes, w: U8x2, rel: I64, t: I64, at: int) -> U8x2:
    """The first TW transport bytes: from the IP window where the transport starts at
    column ``at`` (the usual case), gathered anew for the other rows."""
    here = rel == at
    if here.all():
        return w[:, at:at + TW]
    tw = np.empty((t.size, TW), dtype=np.uint8)
    tw[here] = w[here, at:at + TW]
    tw[~here] = B.win(t[~here], TW)
    return tw


def _ipv4(F: _Frames, rows: Idx, p: I64) -> _Transport | None:
    """IPv4 headers of ``rows`` (at ``p``); the rows that go on to a transport header.

    Rows that fail a check are masked rather than copied out, so that the
    usual block -- nearly all rows IPv4 -- writes whole output columns. When a
    few rows of the block are something else (IPv6, ARP), the IPv4 arrays are
    widened to the whole block and those rows masked too.
    """
    B = F.B
    live: Mask | None = None
    if rows.size != F.n and rows.size * 2 > F.n:
        wide = F.off.copy()  # a readable position for the rows that are not IPv4
        wide[rows] = p
        live = np.zeros(F.n, dtype=bool)
        live[rows] = True
        rows, p = np.arange(F.n), wide
    end = F.take(F.end, rows)
    short = p + 20 > end
    w = B.win(p, IP_WINDOW)
    b0 = w[:, 0].astype(np.int64)
    ihl = (b0 & 15) * 4
    bad = ~short & (((b0 >> 4) != 4) | (ihl < 20))
    if live is not None:
        short &= live
        bad &= live
    F.mark(rows, short, Status.TRUNCATED_IP)
    F.mark(rows, bad, Status.BAD_IP_HEADER)
    ok = ~(short | bad)
    if live is not None:
        ok &= live
    n_ok = int(np.count_nonzero(ok))
    if not n_ok:
        return None
    if n_ok * 2 < rows.size:  # mostly failing rows: leave them behind
        rows, p, end, ihl, w = rows[ok], p[ok], end[ok], ihl[ok], w[ok]
        ok = np.ones(rows.size, dtype=bool)
    every = n_ok == rows.size

    def masked(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return x if every else np.where(ok, x, 0)

    tot = _c16(w, 2)
    ff = _c16(w, 6)
    proto = w[:, 9].astype(np.int64)
    frag_off = (ff & 0x1FFF) * 8
    F.put("ip_version", rows, 4 if every else ok.astype(np.uint8) * 4)
    F.put("ip_len", rows, masked(tot))
    F.put("ip_id", rows, masked(_v16(w, 4)))
    F.put("frag_flags", rows, masked(ff >> 13))
    F.put("frag_offset", rows, masked(frag_off))
    F.put("ttl", rows, masked(w[:, 8]))
    F.put("protocol", rows, masked(proto))
    F.put("src_ip4", rows, masked(_v32(w, 12)))
    F.put("dst_ip4", rows, masked(_v32(w, 16)))
    F.add_layer(rows if every else rows[ok], LAYER_IP)
    if not every:
        ihl = np.where(ok, ihl, 20)
    t = p + ihl
    # total length 0 is what TCP segmentation offload leaves: trust the capture then
    lim = np.where(tot > 0, np.minimum(end, p + tot), end)
    opts_cut = ok & (t > end)
    bogus_len = ok & (tot > 0) & (tot < ihl)
    F.mark(rows, opts_cut, Status.TRUNCATED_IP)
    F.mark(rows, bogus_len & ~opts_cut, Status.BAD_IP_HEADER)
    go = ok & ~opts_cut & ~bogus_len & (frag_off == 0)
    dend = p + tot  # (before p + ihl: total length 0 declares no payload)
    if int(np.count_nonzero(go)) * 2 < rows.size:
        rows, p, t, lim, dend, proto, ihl, w = _keep(go, rows, p, t, lim, dend, proto, ihl, w)
    elif not go.all():
        # rows with no transport stay, with protocol 0, so the transport writes stay whole
        proto = np.where(go, proto, 0)
        ihl = np.where(go, ihl, 20)
        t = p + ihl
    return _Transport(rows, t, _transport_window(B, w, ihl, t, 20), lim, dend, proto, False)


def _ipv6(F: _Frames, rows: Idx, p: I64) -> _Transport | None:
    B = F.B
    end = F.take(F.end, rows)
    short = p + 40 > end
    if short.any():
        F.set_status(rows[short], Status.TRUNCATED_IP)
        rows, p, end = rows[~short], p[~short], end[~short]
    w = B.win(p, IP_WINDOW)
    bad = (w[:, 0] >> 4) != 6
    if bad.any():
        F.set_status(rows[bad], Status.BAD_IP_HEADER)
        rows, p, end, w = rows[~bad], p[~bad], end[~bad], w[~bad]
    if not rows.size:
        return None
    plen = _c16(w, 4)
    nh = w[:, 6].astype(np.int64)
    F.put("ip_version", rows, 6)
    F.put("ip_len", rows, plen + 40)
    F.put("ttl", rows, w[:, 7])
    F.put("src_ip6", rows, _a16(w, 8))
    F.put("dst_ip6", rows, _a16(w, 24))
    F.add_layer(rows, LAYER_IP)
    lim = np.where(plen > 0, np.minimum(end, p + 40 + plen), end)  # 0: a jumbogram
    q = p + 40
    n = rows.size
    frag = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64))
    cut = _ext_walk(F, q, nh, lim, frag)
    F.put("protocol", rows, nh)
    F.put("frag_offset", rows, frag[0])
    F.put("frag_flags", rows, frag[1])
    F.put("ip_id", rows, frag[2])
    go = frag[0] == 0
    if cut.size:
        toolong = q[cut] + 8 <= lim[cut]  # still inside the payload: the chain was too long
        F.set_status(rows[cut], np.where(toolong, Status.BAD_IP_HEADER, Status.TRUNCATED_EXT_HEADERS))
        go[cut] = False
    dend = p + 40 + plen
    rows, p, q, lim, dend, nh, w = _keep(go, rows, p, q, lim, dend, nh, w)
    return _Transport(rows, q, _transport_window(B, w, q - p, q, 40), lim, dend, nh, True)


# ----------------------------------------------------------------------------- transport

def _tcp_options_by_layout(F: _Frames, rows: Idx, o: I64, oend: I64) -> Mask:
    """Kinds and MSS for the rows whose option list has a known layout
    (:func:`sensor.decode_fast.match_option_layouts`); returns the rows left for the
    general walk."""
    kinds, mss, todo = match_option_layouts(F.B.win(o, 40), oend - o)
    if not todo.any():
        F.put("tcp_opt_kinds", rows, kinds)
        F.put("tcp_mss", rows, mss)
    elif not todo.all():
        done = ~todo
        F.put("tcp_opt_kinds", rows[done], kinds[done])
        F.put("tcp_mss", rows[done], mss[done])
    return todo


def _tcp_options(F: _Frames, rows: Idx, o: I64, oend: I64) -> None:
    """Option kinds (first 8) and MSS of TCP headers whose options span ``[o, oend)``.

    Every step consumes exactly one option of every row still walking, so the
    step number is the option's index; rows that finish are dropped from the
    working set only when it has shrunk enough to pay for the copy.
    """
    B = F.B
    if rows.size >= 64:
        todo = _tcp_options_by_layout(F, rows, o, oend)
        if not todo.any():
            return
        rows, o, oend = rows[todo], o[todo], oend[todo]
    n = rows.size
    kinds = np.zeros((n, 8), dtype=np.uint8)
    mss = np.zeros(n, dtype=np.int64)
    idx = np.arange(n)
    p, pend = o.copy(), oend
    live = p < pend
    for step in range(40):  # 40 option bytes at most
        kind = B.u8[p]
        live &= kind != TCPOPT_EOL
        if step < 8:
            kinds[idx, step] = np.where(live, kind, 0)
        nop = kind == TCPOPT_NOP
        ln = np.where(nop, 1, B.u8[p + 1]).astype(np.int64)
        # a length byte outside the options, below 2 or past their end: the walk stops
        ok = live & (nop | ((p + 2 <= pend) & (ln >= 2) & (p + ln <= pend)))
        is_mss = ok & (kind == TCPOPT_MSS) & (ln == 4)
        if is_mss.any():
            at = idx[is_mss]
            first = mss[at] == 0
            mss[at[first]] = B.be16(p[is_mss][first] + 2) | (1 << 16)  # bit 16: "seen"
        # a row that stops parks on its options' end (inside the frame or the pad)
        p = np.where(ok, p + ln, pend)
        live = ok & (p < pend)
        alive = int(np.count_nonzero(live))
        if not alive:
            break
        if alive * 2 < idx.size:
            idx, p, pend, live = idx[live], p[live], pend[live], live[live]
    F.put("tcp_opt_kinds", rows, kinds.view("<u8")[:, 0])
    F.put("tcp_mss", rows, mss & 0xFFFF)


def _ports_tcp_udp(F: _Frames, T: _Transport, tcp: Mask, udp: Mask) -> None:
    """TCP and UDP headers of the rows of ``T``, without splitting the rows by protocol.

    Scanners make most of a telescope's traffic TCP, with some UDP and ICMP
    mixed in: computing the TCP/UDP fields for every row and zeroing them where
    they do not apply costs less than copying the rows of each protocol apart.
    Both protocols start with the two ports.
    """
    rows, t, tw, lim = T.rows, T.t, T.tw, T.lim
    have = lim - t
    ported = (tcp | udp) & (have >= 4)
    if ported.all():
        F.put("src_port", rows, _v16(tw, 0))
        F.put("dst_port", rows, _v16(tw, 2))
    else:
        F.put("src_port", rows, np.where(ported, _v16(tw, 0), 0))
        F.put("dst_port", rows, np.where(ported, _v16(tw, 2), 0))
    udp_ok = udp & (have >= 8)
    if udp.any():
        F.mark(rows, udp & ~udp_ok, Status.TRUNCATED_TRANSPORT)
        F.add_layer(rows[udp_ok], LAYER_TRANSPORT)
    if not tcp.any():
        _payload(F, T, udp_ok, np.int32(8), _c16(tw, 4) - 8)
        return
    whole = tcp & (have >= 20)
    F.mark(rows, tcp & ~whole, Status.TRUNCATED_TRANSPORT)
    hf = _c16(tw, 12)
    doff = (hf >> 12) * 4
    if whole.all():
        F.put("tcp_seq", rows, _v32(tw, 4))
        F.put("tcp_ack", rows, _v32(tw, 8))
        F.put("tcp_flags", rows, hf & 0x0FFF)
        F.put("tcp_window", rows, _v16(tw, 14))
        F.put("tcp_hdr_len", rows, doff)
    else:
        F.put("tcp_seq", rows, np.where(whole, _v32(tw, 4), 0))
        F.put("tcp_ack", rows, np.where(whole, _v32(tw, 8), 0))
        F.put("tcp_flags", rows, np.where(whole, hf & 0x0FFF, 0))
        F.put("tcp_window", rows, np.where(whole, _v16(tw, 14), 0))
        F.put("tcp_hdr_len", rows, np.where(whole, doff, 0))
    F.mark(rows, whole & (doff < 20), Status.BAD_TRANSPORT_HEADER)
    good = whole & (doff >= 20)
    F.add_layer(rows if good.all() else rows[good], LAYER_TRANSPORT)
    hdr = np.where(udp, 8, doff)
    plen = np.where(udp, _c16(tw, 4) - 8, T.dend - t - hdr)
    _payload(F, T, good | udp_ok, hdr, plen)
    has_opts = good & (doff > 20)
    if has_opts.any():
        # options cut by the snap length are read as far as they go (not an error)
        r, tt, oe = rows[has_opts], t[has_opts], np.minimum(t + doff, lim)[has_opts]
        _tcp_options(F, r, tt + 20, oe)


def _payload(F: _Frames, T: _Transport, ok: Mask, hdr: npt.NDArray[np.signedinteger[Any]] | np.int32,
             plen: npt.NDArray[np.signedinteger[Any]]) -> None:
    """``payload_len`` (``plen``, as the headers declare it, where ``ok``) and the first
    bytes of the payload behind the ``hdr`` transport header bytes at ``T.t``: as far
    as they were captured and lie inside the declared payload and the IP datagram."""
    plen = np.clip(np.where(ok, plen, 0), 0, 0xFFFF)
    start = T.t + hdr
    cap = np.clip(np.minimum(plen, T.lim - start), 0, PAYLOAD_HEAD)
    F.put("payload_len", T.rows, plen)
    F.put("payload_cap", T.rows, cap)
    has = np.flatnonzero(cap)
    if has.size:
        F.put("payload_head", T.rows[has], payload_heads(F.B.u8, start[has], cap[has]))


def _quote4(F: _Frames, rows: Idx, q: I64, lim: I64) -> None:
    """The IPv4 header (and ports) quoted by an ICMP error at ``q``."""
    w = F.B.win(q, 24)
    b0 = w[:, 0].astype(np.int64)
    ihl = (b0 & 15) * 4
    ok = (q + 20 <= lim) & ((b0 >> 4) == 4) & (ihl >= 20)
    rows, q, lim, ihl, w = rows[ok], q[ok], lim[ok], ihl[ok], w[ok]
    proto = w[:, 9].astype(np.int64)
    F.put("inner_ip_version", rows, 4)
    F.put("inner_protocol", rows, proto)
    F.put("inner_src_ip4", rows, _v32(w, 12))
    F.put("inner_dst_ip4", rows, _v32(w, 16))
    F.add_layer(rows, LAYER_INNER)
    first = (_c16(w, 6) & 0x1FFF) == 0
    t = q + ihl
    pk = first & _isin(proto, QUOTE_PORT_PROTOCOLS) & (t + 4 <= lim)
    _quote_ports(F, rows[pk], t[pk])


def _quote6(F: _Frames, rows: Idx, q: I64, lim: I64) -> None:
    """The IPv6 header (and ports) quoted by an ICMPv6 error at ``q``."""
    w = F.B.win(q, 40)
    ok = (q + 40 <= lim) & ((w[:, 0] >> 4) == 6)
    rows, q, lim, w = rows[ok], q[ok], lim[ok], w[ok]
    F.put("inner_ip_version", rows, 6)
    F.put("inner_src_ip6", rows, _a16(w, 8))
    F.put("inner_dst_ip6", rows, _a16(w, 24))
    F.add_layer(rows, LAYER_INNER)
    nh = w[:, 6].astype(np.int64)
    t = q + 40
    n = rows.size
    frag = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64))
    cut = _ext_walk(F, t, nh, lim, frag)
    F.put("inner_protocol", rows, nh)
    pk = (frag[0] == 0) & _isin(nh, QUOTE_PORT_PROTOCOLS) & (t + 4 <= lim)
    pk[cut] = False
    _quote_ports(F, rows[pk], t[pk])


def _quote_ports(F: _Frames, rows: Idx, t: I64) -> None:
    F.put("inner_src_port", rows, F.B.be16(t))
    F.put("inner_dst_port", rows, F.B.be16(t + 2))
    F.add_layer(rows, LAYER_INNER_PORTS)


def _icmp(F: _Frames, rows: Idx, t: I64, tw: U8x2, lim: I64, v6: bool) -> None:
    have = lim - t
    tc = have >= 2
    typ = tw[:, 0].astype(np.int64)
    F.put("icmp_type", rows[tc], typ[tc])
    F.put("icmp_code", rows[tc], tw[tc, 1])
    short = have < 8
    F.mark(rows, short, Status.TRUNCATED_TRANSPORT)
    F.add_layer(rows[~short], LAYER_TRANSPORT)
    err = ~short & _isin(typ, ICMP6_ERRORS if v6 else ICMP4_ERRORS)
    if err.any():
        (_quote6 if v6 else _quote4)(F, rows[err], t[err] + 8, lim[err])


def _transport(F: _Frames, T: _Transport | None) -> None:
    if T is None or not T.rows.size:
        return
    proto = T.proto
    tcp = proto == IPPROTO_TCP
    udp = proto == IPPROTO_UDP
    if tcp.any() or udp.any():
        _ports_tcp_udp(F, T, tcp, udp)
    icmp = proto == (IPPROTO_ICMPV6 if T.v6 else IPPROTO_ICMP)
    if icmp.any():
        rows, t, tw, lim = _keep(icmp, T.rows, T.t, T.tw, T.lim)
        _icmp(F, rows, t, tw, lim, T.v6)


# ----------------------------------------------------------------------------- entry point

def _as_rows(x: int | npt.ArrayLike, n: int, dtype: type) -> npt.NDArray[np.generic]:
    a = np.asarray(x)
    if a.ndim == 0:
        return np.full(n, a, dtype=dtype)
    if a.shape != (n,):
        raise ValueError(f"per-frame array of shape {a.shape}, expected ({n},)")
    return a


def decode_frames(buf: npt.NDArray[np.uint8], offsets: npt.NDArray[np.integer],
                  cap_lens: npt.NDArray[np.integer], wire_lens: npt.NDArray[np.integer],
                  ts_ns: npt.NDArray[np.int64], linktype: int | npt.NDArray[np.integer],
                  iface: int | npt.NDArray[np.integer] = 0,
                  status_out: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.void]:
    """Decode frames ``buf[offsets[i]:offsets[i] + cap_lens[i]]``: one ``PACKET_DTYPE`` row each.

    ``linktype`` and ``iface`` are one value for all frames or one per frame.
    Frames reaching past the buffer are cut at its end. Never raises on frame
    contents; ``status`` says what went wrong per frame. ``status_out`` (one
    byte per frame, zeroed), when given, receives the ``status`` column too:
    counting it there is cheaper than in the output rows, and the decoder knows
    which rows can be other than OK.
    """
    offsets = np.asarray(offsets)
    n = int(offsets.size)
    out = np.empty(n, dtype=PACKET_DTYPE)
    if n == 0:
        return out
    raw = np.asarray(buf)
    if raw.dtype != np.uint8 or raw.ndim != 1 or not raw.flags.c_contiguous:
        raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    size = raw.size
    off_c = np.asarray(offsets, dtype=np.int64)
    cap_in = np.asarray(cap_lens)
    cap = cap_in.astype(np.int64)
    end = off_c + cap
    hi = int(end.max())
    if int(off_c.min()) < 0 or hi > size:
        # frames reaching past the buffer are cut at its end (readers never pass such frames)
        off_c = np.clip(off_c, 0, size)
        cap = np.clip(cap, 0, size - off_c)
        cap_in = cap
        end = off_c + cap
        hi = int(end.max())
    if size < hi + DECODE_PAD:
        padded = np.zeros(hi + DECODE_PAD, dtype=np.uint8)
        padded[:size] = raw
        raw = padded
    lt = _as_rows(linktype, n, np.uint16)
    # one value for every row, or one per row
    lt_out: Any = lt if np.ndim(linktype) else linktype
    ifc: Any = _as_rows(iface, n, np.uint16) if np.ndim(iface) else iface
    ts = np.asarray(ts_ns)
    wire = np.asarray(wire_lens)
    B = _Bytes(raw)
    one = np.ndim(linktype) == 0 or int(lt.min()) == int(lt.max())
    # blocks of rows small enough that the output rows being filled stay in cache
    slow: list[Idx] = []
    opts: list[tuple[Idx, I64, I64]] = []
    quotes: list[tuple[Idx, I64, I64]] = []
    general: list[slice] = []  # blocks the general path decoded
    for s in range(0, n, BLOCK_ROWS):
        e = min(s + BLOCK_ROWS, n)
        blk = out[s:e]
        blt = int(lt[s]) if one else lt[s:e].astype(np.uint16)
        fast = None
        if isinstance(blt, int) and blt == LINKTYPE_ETHERNET:
            fast = fast_ethernet_ipv4(blk, B.u8, off_c[s:e], end[s:e])
        if fast is None:
            blk.view(np.uint8)[:] = 0
            _decode_block(blk, B, off_c[s:e], end[s:e], blt)
            general.append(slice(s, e))
        else:
            if fast.slow.size:
                slow.append(fast.slow + s)
            if fast.opt_rows.size:
                opts.append((fast.opt_rows + s, fast.opt_start, fast.opt_end))
            if fast.quote_rows.size:
                quotes.append((fast.quote_rows + s, fast.quote_start, fast.quote_end))
        # while the block's rows are still in cache
        blk["ts_ns"] = ts[s:e]
        if np.ndim(ifc) or ifc:  # (the rows start zeroed)
            blk["iface"] = ifc if np.ndim(ifc) == 0 else ifc[s:e]
        blk["linktype"] = lt_out if np.ndim(lt_out) == 0 else lt_out[s:e]
        blk["wire_len"] = wire[s:e]
        blk["cap_len"] = cap_in[s:e]
    if opts or quotes:
        # what the fast path handed back, of all blocks at once: TCP options of a layout not
        # known, headers quoted by ICMP errors (the rows hold the fast path's fields already)
        F = _Frames(out, B, off_c, end)
        F.written.update(PACKET_DTYPE.names or ())
        if opts:
            _tcp_options(F, *(np.concatenate(a) for a in zip(*opts, strict=True)))
        if quotes:
            quoted, start, stop = (np.concatenate(a) for a in zip(*quotes, strict=True))
            _quote4(F, quoted, start, stop)
        for name, col in F.cols.items():
            out[name] = col
        if quotes:
            out["layers"][quoted] |= F.layers[quoted]  # (the bits the quotes add)
    slow_rows = np.concatenate(slow) if slow else None
    if slow_rows is not None:
        # rows the fast path left (their output rows must be overwritten whole), decoded
        # together: the general path costs a fixed time per call
        _decode_slow(out, B, slow_rows, off_c, end)
    if status_out is not None:
        # every row of a fast block is OK but those the general path decoded afterwards
        for sl in general:
            status_out[sl] = out["status"][sl]
        if slow_rows is not None:
            status_out[slow_rows] = out["status"][slow_rows]
    return out


#: the record fields (time, interface, link type, lengths) lead the row; the decoder fills the rest
_RECORD_FIELDS = ("ts_ns", "iface", "linktype", "wire_len", "cap_len")
_RECORD_BYTES = max(PACKET_DTYPE.fields[f][1] + PACKET_DTYPE[f].itemsize for f in _RECORD_FIELDS)  # type: ignore[index]
if any(PACKET_DTYPE.fields[f][1] < _RECORD_BYTES  # type: ignore[index]
       for f in PACKET_DTYPE.names or () if f not in _RECORD_FIELDS):
    raise AssertionError("PACKET_DTYPE: the record fields must lead the row")


def _decode_slow(out: npt.NDArray[np.void], B: _Bytes, rows: Idx, off: I64, end: I64) -> None:
    """Ethernet frames ``rows`` of ``out`` (in order) decoded afresh by the general path."""
    for s in range(0, rows.size, BLOCK_ROWS):
        r = rows[s:s + BLOCK_ROWS]
        # as raw rows: numpy copies structured rows field by field
        raw = f"V{PACKET_DTYPE.itemsize}"
        sub = out.view(raw)[r].view(PACKET_DTYPE)
        # the record's own fields (written already) stay; every decoded field starts at 0
        sub.view(np.uint8).reshape(r.size, -1)[:, _RECORD_BYTES:] = 0
        _decode_block(sub, B, off[r], end[r], LINKTYPE_ETHERNET)
        out.view(raw)[r] = sub.view(raw)


def _decode_block(out: npt.NDArray[np.void], B: _Bytes, off: I64, end: I64,
                  lt: int | npt.NDArray[np.uint16]) -> None:
    n = off.size
    F = _Frames(out, B, off, end)
    if isinstance(lt, int):
        groups: list[tuple[int, Idx]] = [(lt, np.arange(n))]
    else:
        groups = [(int(v), np.flatnonzero(lt == v)) for v in np.unique(lt).tolist()]
    ip_rows, ip_pos, ip_ver = [], [], []
    for kind, rows in groups:
        r, p, v = _link(F, rows, kind)
        ip_rows.append(r)
        ip_pos.append(p)
        ip_ver.append(v)
    if len(groups) > 1:
        # back to frame order: the layers below rely on sorted rows
        rows = np.concatenate(ip_rows)
        order = np.argsort(rows, kind="stable")
        rows, pos, ver = rows[order], np.concatenate(ip_pos)[order], np.concatenate(ip_ver)[order]
    else:
        rows, pos, ver = ip_rows[0], ip_pos[0], ip_ver[0]
    v4 = ver == 4
    if v4.all():
        _transport(F, _ipv4(F, rows, pos))
    else:
        if v4.any():
            _transport(F, _ipv4(F, rows[v4], pos[v4]))
        if (~v4).any():
            _transport(F, _ipv6(F, rows[~v4], pos[~v4]))
    F.flush()
