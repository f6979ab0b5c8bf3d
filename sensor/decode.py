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

import numpy as np
import numpy.typing as npt

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
    Status,
)

__all__ = ["DECODE_PAD", "decode_frames"]

I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]
Mask = npt.NDArray[np.bool_]

#: bytes a frame may be read past its end (fixed-size reads before a length check);
#: callers that own the buffer keep this many readable bytes after the last frame
DECODE_PAD = 256


class _Bytes:
    """Big-endian fields at any byte offset of one buffer (gathers, no copies)."""

    __slots__ = ("a16", "b16", "b32", "l32", "u8")

    def __init__(self, buf: npt.NDArray[np.uint8]) -> None:
        n = buf.size
        self.u8 = buf
        self.b16 = np.ndarray((n - 1,), dtype=">u2", buffer=buf, offset=0, strides=(1,))
        self.b32 = np.ndarray((n - 3,), dtype=">u4", buffer=buf, offset=0, strides=(1,))
        self.l32 = np.ndarray((n - 3,), dtype="<u4", buffer=buf, offset=0, strides=(1,))
        self.a16 = np.ndarray((n - 15,), dtype="V16", buffer=buf, offset=0, strides=(1,))

    def u8_(self, pos: I64) -> npt.NDArray[np.int64]:
        return self.u8[pos].astype(np.int64)

    def be16(self, pos: I64) -> npt.NDArray[np.int64]:
        return self.b16[pos].astype(np.int64)

    def be32(self, pos: I64) -> npt.NDArray[np.int64]:
        return self.b32[pos].astype(np.int64)


def _isin(values: npt.NDArray[np.int64], choices: tuple[int, ...]) -> Mask:
    m = values == choices[0]
    for c in choices[1:]:
        m |= values == c
    return m


class _Frames:
    """Per-batch working state: the output, per-frame status and header positions."""

    def __init__(self, out: npt.NDArray[np.void], B: _Bytes, off: I64, end: I64) -> None:
        self.out = out
        self.B = B
        self.off = off
        self.end = end
        n = off.size
        self.status = np.zeros(n, dtype=np.uint8)
        self.layers = np.zeros(n, dtype=np.uint8)

    def fail(self, rows: Idx, mask: Mask, status: Status) -> Idx:
        """Mark ``rows[mask]`` with ``status``; return the rows that go on."""
        if mask.any():
            self.status[rows[mask]] = status
            return rows[~mask]
        return rows


# ----------------------------------------------------------------------------- link layer

def _vlan_walk(F: _Frames, rows: Idx, pos: I64, etype: npt.NDArray[np.int64]) -> None:
    """Step over any depth of 802.1Q/802.1ad tags (updates pos, etype in place)."""
    tagged = _isin(etype, VLAN_TPIDS)
    if not tagged.any():
        return
    cur = np.flatnonzero(tagged)
    first = True
    while cur.size:
        fits = pos[cur] + 4 <= F.end[rows[cur]]
        if not fits.all():
            F.status[rows[cur[~fits]]] = Status.TRUNCATED_LINK
            etype[cur[~fits]] = -1
            cur = cur[fits]
        p = pos[cur]
        if first:
            F.out["vlan"][rows[cur]] = F.B.be16(p) & 0x0FFF
            first = False
        etype[cur] = F.B.be16(p + 2)
        pos[cur] = p + 4
        cur = cur[_isin(etype[cur], VLAN_TPIDS)]


def _mac48(B: _Bytes, pos: I64) -> npt.NDArray[np.uint64]:
    return ((B.be16(pos) << 32) | B.be32(pos + 2)).astype(np.uint64)


def _link(F: _Frames, rows: Idx, linktype: int) -> tuple[Idx, I64, npt.NDArray[np.int64]]:
    """Frames ``rows`` of one link type -> (rows that carry IP, L3 positions, IP version)."""
    B = F.B
    off = F.off[rows]
    end = F.end[rows]
    if linktype in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        hdr = {LINKTYPE_ETHERNET: ETH_HDR, LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20}[linktype]
        short = off + hdr > end
        if short.any():
            F.status[rows[short]] = Status.TRUNCATED_LINK
            keep = ~short
            rows, off, end = rows[keep], off[keep], end[keep]
        if linktype == LINKTYPE_ETHERNET:
            F.out["src_mac"][rows] = _mac48(B, off + 6)
            etype = B.be16(off + 12)
        else:
            # cooked captures: the sender's link address, when it is a 6-byte Ethernet one
            if linktype == LINKTYPE_LINUX_SLL:
                etype = B.be16(off + 14)
                hatype, halen, addr = B.be16(off + 2), B.be16(off + 4), off + 6
            else:
                etype = B.be16(off)
                hatype, halen, addr = B.be16(off + 8), B.u8_(off + 11), off + 12
            eth = (hatype == 1) & (halen == 6)
            if eth.any():
                F.out["src_mac"][rows[eth]] = _mac48(B, addr[eth])
        pos = off + hdr
        _vlan_walk(F, rows, pos, etype)
        version = np.where(etype == ETHERTYPE_IPV4, 4, np.where(etype == ETHERTYPE_IPV6, 6, 0))
        other = (version == 0) & (etype >= 0)
        if other.any():
            F.status[rows[other]] = Status.NOT_IP
        ip = version > 0
        return rows[ip], pos[ip], version[ip]
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        short = off + 4 > end
        if short.any():
            F.status[rows[short]] = Status.TRUNCATED_LINK
            keep = ~short
            rows, off, end = rows[keep], off[keep], end[keep]
        if linktype == LINKTYPE_LOOP:
            fam = B.be32(off)
        else:
            # written in the capturing host's byte order: a family never exceeds 16 bits
            fam = B.l32[off].astype(np.int64)
            swapped = fam > 0xFFFF
            fam[swapped] = B.be32(off[swapped])
        version = np.where(fam == AF_INET, 4, np.where(_isin(fam, AF_INET6_VALUES), 6, 0))
        other = version == 0
        if other.any():
            F.status[rows[other]] = Status.NOT_IP
        ip = ~other
        return rows[ip], (off + 4)[ip], version[ip]
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OLD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if linktype == LINKTYPE_IPV4:
            version = np.full(rows.size, 4, dtype=np.int64)
        elif linktype == LINKTYPE_IPV6:
            version = np.full(rows.size, 6, dtype=np.int64)
        else:
            version = B.u8_(off) >> 4
            bad = (version != 4) & (version != 6) & (off < end)
            if bad.any():
                F.status[rows[bad]] = Status.BAD_IP_HEADER
                version[bad] = 0
            version[off >= end] = 4  # nothing captured: the IP layer reports the truncation
            ip = version > 0
            return rows[ip], off[ip], version[ip]
        return rows, off, version
    F.status[rows] = Status.UNKNOWN_LINKTYPE
    empty = np.zeros(0, dtype=np.int64)
    return rows[:0], empty, empty


# ----------------------------------------------------------------------------- IP layer

def _ext_walk(F: _Frames, rows: Idx, q: I64, nh: I64, lim: I64,
              frag: tuple[I64, I64, I64] | None) -> Idx:
    """Walk IPv6 extension headers in place (q, nh); return the rows whose chain is cut or bad.

    ``frag`` (offset, more-fragments, identification) arrays receive the
    fragment header's fields. A chain stops at a non-first fragment: what
    follows is payload, not a header.
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
        if frag is not None and isfrag.any():
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
    """Rows that reached a transport header: position, end of the IP payload, protocol."""

    __slots__ = ("lim", "proto", "rows", "t", "v6")

    def __init__(self, rows: Idx, t: I64, lim: I64, proto: I64, v6: Mask) -> None:
        self.rows, self.t, self.lim, self.proto, self.v6 = rows, t, lim, proto, v6


def _ipv4(F: _Frames, rows: Idx, p: I64) -> _Transport:
    B, out = F.B, F.out
    end = F.end[rows]
    short = p + 20 > end
    if short.any():
        F.status[rows[short]] = Status.TRUNCATED_IP
        rows, p, end = rows[~short], p[~short], end[~short]
    b0 = B.u8_(p)
    ihl = (b0 & 15) * 4
    bad = ((b0 >> 4) != 4) | (ihl < 20)
    if bad.any():
        F.status[rows[bad]] = Status.BAD_IP_HEADER
        rows, p, end, ihl = rows[~bad], p[~bad], end[~bad], ihl[~bad]
    tot = B.be16(p + 2)
    ff = B.be16(p + 6)
    proto = B.u8_(p + 9)
    frag_off = (ff & 0x1FFF) * 8
    out["ip_version"][rows] = 4
    out["ip_len"][rows] = tot
    out["ip_id"][rows] = B.be16(p + 4)
    out["frag_flags"][rows] = ff >> 13
    out["frag_offset"][rows] = frag_off
    out["ttl"][rows] = B.u8_(p + 8)
    out["protocol"][rows] = proto
    out["src_ip4"][rows] = B.b32[p + 12]
    out["dst_ip4"][rows] = B.b32[p + 16]
    F.layers[rows] |= LAYER_IP
    t = p + ihl
    # total length 0 is what TCP segmentation offload leaves: trust the capture then
    lim = np.where(tot > 0, np.minimum(end, p + tot), end)
    opts_cut = t > end
    bogus_len = (tot > 0) & (tot < ihl)
    stop = opts_cut | bogus_len
    if stop.any():
        F.status[rows[opts_cut]] = Status.TRUNCATED_IP
        F.status[rows[bogus_len & ~opts_cut]] = Status.BAD_IP_HEADER
    go = ~stop & (frag_off == 0)
    return _Transport(rows[go], t[go], lim[go], proto[go], np.zeros(int(go.sum()), dtype=bool))


def _ipv6(F: _Frames, rows: Idx, p: I64) -> _Transport:
    B, out = F.B, F.out
    end = F.end[rows]
    short = p + 40 > end
    if short.any():
        F.status[rows[short]] = Status.TRUNCATED_IP
        rows, p, end = rows[~short], p[~short], end[~short]
    bad = (B.u8_(p) >> 4) != 6
    if bad.any():
        F.status[rows[bad]] = Status.BAD_IP_HEADER
        rows, p, end = rows[~bad], p[~bad], end[~bad]
    plen = B.be16(p + 4)
    nh = B.u8_(p + 6)
    out["ip_version"][rows] = 6
    out["ip_len"][rows] = plen + 40
    out["ttl"][rows] = B.u8[p + 7]
    out["src_ip6"][rows] = B.a16[p + 8]
    out["dst_ip6"][rows] = B.a16[p + 24]
    F.layers[rows] |= LAYER_IP
    lim = np.where(plen > 0, np.minimum(end, p + 40 + plen), end)  # 0: a jumbogram
    q = p + 40
    frag = (np.zeros(rows.size, np.int64), np.zeros(rows.size, np.int64), np.zeros(rows.size, np.int64))
    cut = _ext_walk(F, rows, q, nh, lim, frag)
    out["protocol"][rows] = nh
    out["frag_offset"][rows] = frag[0]
    out["frag_flags"][rows] = frag[1]
    out["ip_id"][rows] = frag[2]
    go = np.ones(rows.size, dtype=bool)
    if cut.size:
        toolong = q[cut] + 8 <= lim[cut]  # still inside the payload: the chain was too long
        F.status[rows[cut]] = np.where(toolong, Status.BAD_IP_HEADER, Status.TRUNCATED_EXT_HEADERS)
        go[cut] = False
    go &= frag[0] == 0
    return _Transport(rows[go], q[go], lim[go], nh[go], np.ones(int(go.sum()), dtype=bool))


# ----------------------------------------------------------------------------- transport

def _tcp_options(F: _Frames, rows: Idx, o: I64, oend: I64) -> None:
    B = F.B
    n = rows.size
    kinds = np.zeros(n, dtype=np.uint64)
    count = np.zeros(n, dtype=np.int64)
    mss = np.zeros(n, dtype=np.int64)
    cur = np.flatnonzero(o < oend)
    while cur.size:
        p = o[cur]
        kind = B.u8_(p)
        cur = cur[kind != TCPOPT_EOL]
        p, kind = p[kind != TCPOPT_EOL], kind[kind != TCPOPT_EOL]
        c = count[cur]
        room = c < 8
        kinds[cur[room]] |= kind[room].astype(np.uint64) << (c[room].astype(np.uint64) * np.uint64(8))
        count[cur] = c + 1
        nop = kind == TCPOPT_NOP
        ln = np.where(nop, 1, B.u8_(p + 1))
        # a length byte outside the options, below 2 or past their end: the walk stops
        ok = nop | ((p + 2 <= oend[cur]) & (ln >= 2) & (p + ln <= oend[cur]))
        is_mss = ok & (kind == TCPOPT_MSS) & (ln == 4)
        if is_mss.any():
            mc = cur[is_mss]
            first = mss[mc] == 0
            mss[mc[first]] = B.be16(p[is_mss][first] + 2) | (1 << 16)  # bit 16: "seen"
        o[cur] = p + ln
        cur = cur[ok]
        cur = cur[o[cur] < oend[cur]]
    F.out["tcp_opt_kinds"][rows] = kinds
    F.out["tcp_mss"][rows] = mss & 0xFFFF


def _tcp(F: _Frames, rows: Idx, t: I64, lim: I64) -> None:
    B, out = F.B, F.out
    have = lim - t
    ports = have >= 4
    out["src_port"][rows[ports]] = B.b16[t[ports]]
    out["dst_port"][rows[ports]] = B.b16[t[ports] + 2]
    short = have < 20
    if short.any():
        F.status[rows[short]] = Status.TRUNCATED_TRANSPORT
        rows, t, lim = rows[~short], t[~short], lim[~short]
    hf = B.be16(t + 12)
    doff = (hf >> 12) * 4
    out["tcp_seq"][rows] = B.b32[t + 4]
    out["tcp_ack"][rows] = B.b32[t + 8]
    out["tcp_flags"][rows] = hf & 0x0FFF
    out["tcp_window"][rows] = B.b16[t + 14]
    out["tcp_hdr_len"][rows] = doff
    bad = doff < 20
    if bad.any():
        F.status[rows[bad]] = Status.BAD_TRANSPORT_HEADER
        rows, t, lim, doff = rows[~bad], t[~bad], lim[~bad], doff[~bad]
    F.layers[rows] |= LAYER_TRANSPORT
    has_opts = doff > 20
    if has_opts.any():
        # options cut by the snap length are read as far as they go (not an error)
        _tcp_options(F, rows[has_opts], t[has_opts] + 20, np.minimum(t + doff, lim)[has_opts])


def _udp(F: _Frames, rows: Idx, t: I64, lim: I64) -> None:
    B, out = F.B, F.out
    have = lim - t
    ports = have >= 4
    out["src_port"][rows[ports]] = B.b16[t[ports]]
    out["dst_port"][rows[ports]] = B.b16[t[ports] + 2]
    short = have < 8
    F.status[rows[short]] = Status.TRUNCATED_TRANSPORT
    F.layers[rows[~short]] |= LAYER_TRANSPORT


def _quote4(F: _Frames, rows: Idx, q: I64, lim: I64) -> None:
    """The IPv4 header (and ports) quoted by ICMP errors at ``q``."""
    B, out = F.B, F.out
    b0 = B.u8_(q)
    ihl = (b0 & 15) * 4
    ok = (q + 20 <= lim) & ((b0 >> 4) == 4) & (ihl >= 20)
    rows, q, lim, ihl = rows[ok], q[ok], lim[ok], ihl[ok]
    proto = B.u8_(q + 9)
    out["inner_ip_version"][rows] = 4
    out["inner_protocol"][rows] = proto
    out["inner_src_ip4"][rows] = B.b32[q + 12]
    out["inner_dst_ip4"][rows] = B.b32[q + 16]
    F.layers[rows] |= LAYER_INNER
    first = (B.be16(q + 6) & 0x1FFF) == 0
    t = q + ihl
    pk = first & _isin(proto, QUOTE_PORT_PROTOCOLS) & (t + 4 <= lim)
    _quote_ports(F, rows[pk], t[pk])


def _quote6(F: _Frames, rows: Idx, q: I64, lim: I64) -> None:
    """The IPv6 header (and ports) quoted by ICMPv6 errors at ``q``."""
    B, out = F.B, F.out
    ok = (q + 40 <= lim) & ((B.u8_(q) >> 4) == 6)
    rows, q, lim = rows[ok], q[ok], lim[ok]
    out["inner_ip_version"][rows] = 6
    out["inner_src_ip6"][rows] = B.a16[q + 8]
    out["inner_dst_ip6"][rows] = B.a16[q + 24]
    F.layers[rows] |= LAYER_INNER
    nh = B.u8_(q + 6)
    t = q + 40
    n = rows.size
    frag = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64))
    cut = _ext_walk(F, rows, t, nh, lim, frag)
    out["inner_protocol"][rows] = nh
    pk = (frag[0] == 0) & _isin(nh, QUOTE_PORT_PROTOCOLS) & (t + 4 <= lim)
    pk[cut] = False
    _quote_ports(F, rows[pk], t[pk])


def _quote_ports(F: _Frames, rows: Idx, t: I64) -> None:
    F.out["inner_src_port"][rows] = F.B.b16[t]
    F.out["inner_dst_port"][rows] = F.B.b16[t + 2]
    F.layers[rows] |= LAYER_INNER_PORTS


def _icmp(F: _Frames, rows: Idx, t: I64, lim: I64, v6: bool) -> None:
    B, out = F.B, F.out
    have = lim - t
    tc = have >= 2
    typ = B.u8_(t)
    out["icmp_type"][rows[tc]] = typ[tc]
    out["icmp_code"][rows[tc]] = B.u8[t[tc] + 1]
    short = have < 8
    F.status[rows[short]] = Status.TRUNCATED_TRANSPORT
    whole = ~short
    F.layers[rows[whole]] |= LAYER_TRANSPORT
    err = whole & _isin(typ, ICMP6_ERRORS if v6 else ICMP4_ERRORS)
    if err.any():
        (_quote6 if v6 else _quote4)(F, rows[err], t[err] + 8, lim[err])


def _transport(F: _Frames, T: _Transport) -> None:
    proto = T.proto
    for sel, fn in (
        (proto == IPPROTO_TCP, _tcp),
        (proto == IPPROTO_UDP, _udp),
    ):
        if sel.any():
            fn(F, T.rows[sel], T.t[sel], T.lim[sel])
    for v6, num in ((False, IPPROTO_ICMP), (True, IPPROTO_ICMPV6)):
        sel = (proto == num) & (T.v6 == v6)
        if sel.any():
            _icmp(F, T.rows[sel], T.t[sel], T.lim[sel], v6)


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
                  iface: int | npt.NDArray[np.integer] = 0) -> npt.NDArray[np.void]:
    """Decode frames ``buf[offsets[i]:offsets[i] + cap_lens[i]]``: one ``PACKET_DTYPE`` row each.

    ``linktype`` and ``iface`` are one value for all frames or one per frame.
    Frames reaching past the buffer are cut at its end. Never raises on frame
    contents; ``status`` says what went wrong per frame.
    """
    offsets = np.asarray(offsets)
    n = int(offsets.size)
    out = np.zeros(n, dtype=PACKET_DTYPE)
    if n == 0:
        return out
    raw = np.asarray(buf)
    if raw.dtype != np.uint8 or raw.ndim != 1 or not raw.flags.c_contiguous:
        raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    size = raw.size
    off = offsets.astype(np.int64)
    cap = np.asarray(cap_lens).astype(np.int64)
    off_c = np.clip(off, 0, size)
    cap = np.clip(cap, 0, size - off_c)
    end = off_c + cap
    if size < int(end.max()) + DECODE_PAD:
        padded = np.zeros(int(end.max()) + DECODE_PAD, dtype=np.uint8)
        padded[:size] = raw
        raw = padded
    lt = _as_rows(linktype, n, np.uint16)
    out["ts_ns"] = ts_ns
    out["iface"] = _as_rows(iface, n, np.uint16)
    out["linktype"] = lt
    out["wire_len"] = wire_lens
    out["cap_len"] = cap
    F = _Frames(out, _Bytes(raw), off_c, end)

    if np.ndim(linktype) == 0:
        groups: list[tuple[int, Idx]] = [(int(np.asarray(linktype)), np.arange(n))]
    elif int(lt.min()) == int(lt.max()):
        groups = [(int(lt[0]), np.arange(n))]
    else:
        groups = [(int(v), np.flatnonzero(lt == v)) for v in np.unique(lt).tolist()]
    ip_rows, ip_pos, ip_ver = [], [], []
    for kind, rows in groups:
        r, p, v = _link(F, rows, kind)
        ip_rows.append(r)
        ip_pos.append(p)
        ip_ver.append(v)
    rows = np.concatenate(ip_rows) if len(ip_rows) > 1 else ip_rows[0]
    pos = np.concatenate(ip_pos) if len(ip_pos) > 1 else ip_pos[0]
    ver = np.concatenate(ip_ver) if len(ip_ver) > 1 else ip_ver[0]
    v4 = ver == 4
    if v4.all():
        _transport(F, _ipv4(F, rows, pos))
    else:
        if v4.any():
            _transport(F, _ipv4(F, rows[v4], pos[v4]))
        if (~v4).any():
            _transport(F, _ipv6(F, rows[~v4], pos[~v4]))
    out["status"] = F.status
    out["layers"] = F.layers
    return out
