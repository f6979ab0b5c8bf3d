"""Packet specifications -> Ethernet frames, vectorized.

Theory of operation: a planted packet is one row of :data:`SPEC_DTYPE` (the
header values it must carry). Rows of the same *shape* (VLAN tag count, IP
version, transport kind, TCP option layout, payload template) have the same
frame length, so a group of them is built as one ``(n, L)`` uint8 block:
each header field is written into its columns for all rows at once, and the
IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums are ones-complement sums of
the block viewed as big-endian 16-bit words (RFC 1071). ICMP errors quote an
IPv4 or IPv6 header (with its own valid checksum) and the first 8 bytes of
the quoted transport header (RFC 792, RFC 4443 section 3).

Layouts follow the RFCs: Ethernet II with 802.1Q / 802.1ad tags (IEEE
802.1Q), IPv4 (RFC 791), IPv6 (RFC 8200), TCP (RFC 9293) with options MSS,
SACK-permitted, timestamps and window scale (RFC 2018, RFC 7323), UDP
(RFC 768), ICMP (RFC 792), ICMPv6 (RFC 4443), ARP (RFC 826) for the few
non-IP frames.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from bench.gen.payloads import PAYLOADS

__all__ = [
    "ETH_ARP",
    "EXT6_FRAG",
    "EXT6_HBH_DST",
    "EXT6_LAYOUTS",
    "EXT6_NONE",
    "L4_ARP",
    "L4_FRAG_TAIL",
    "L4_ICMP_ECHO",
    "L4_ICMP_ERR",
    "L4_TCP",
    "L4_UDP",
    "OPT_LINUX_SYN",
    "OPT_LINUX_SYNACK",
    "OPT_MSS",
    "OPT_NONE",
    "OPT_WINDOWS_SYN",
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "PROTO_UDP",
    "SENSOR_MAC",
    "SPEC_DTYPE",
    "TCP_OPTION_LAYOUTS",
    "FrameGroup",
    "build_frame_groups",
    "build_frames",
    "ext6_len",
    "frame_lengths",
    "take_rows",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
#: the capture interface's own MAC (frames' destination); locally administered
SENSOR_MAC = 0x02_00_5E_10_00_01

# transport kinds (``l4`` column)
L4_TCP = 1
L4_UDP = 2
L4_ICMP_ECHO = 3  # echo request / reply, ICMP or ICMPv6 (type in icmp_type)
L4_ICMP_ERR = 4  # ICMP / ICMPv6 error quoting an IP header + 8 bytes
L4_FRAG_TAIL = 5  # a non-first IPv4 fragment: raw data only
L4_ARP = 6  # an ARP request (not IP at all)

# IPv6 extension headers before the transport (``ext6`` column), RFC 8200 section 4
EXT6_NONE = 0
EXT6_HBH_DST = 1  # Hop-by-Hop Options then Destination Options, each 8 bytes of PadN
EXT6_FRAG = 2  # an atomic Fragment header (offset 0, M = 0; RFC 6946), identification from ``ext_id``
#: extension layout -> (header types in order, length in bytes)
EXT6_LAYOUTS: dict[int, tuple[tuple[int, ...], int]] = {EXT6_NONE: ((), 0), EXT6_HBH_DST: ((0, 60), 16),
                                                         EXT6_FRAG: ((44,), 8)}  # fmt: skip

# TCP option layouts (``opts`` column): kinds in order, and byte length
OPT_NONE = 0
OPT_MSS = 1  # MSS only (Nmap, ZMap >= 3.0, Masscan >= 1.3.2)
OPT_LINUX_SYN = 2  # MSS, SACK_PERM, TS, NOP, WS (Linux connect())
OPT_WINDOWS_SYN = 3  # MSS, NOP, WS, NOP, NOP, SACK_PERM (Windows connect())
OPT_LINUX_SYNACK = 4  # MSS, SACK_PERM, TS, NOP, WS (Linux SYN-ACK)
#: option layout -> (option kinds in order, length in bytes)
TCP_OPTION_LAYOUTS: dict[int, tuple[tuple[int, ...], int]] = {
    OPT_NONE: ((), 0),
    OPT_MSS: ((2,), 4),
    OPT_LINUX_SYN: ((2, 4, 8, 1, 3), 20),
    OPT_WINDOWS_SYN: ((2, 1, 3, 1, 1, 4), 12),
    OPT_LINUX_SYNACK: ((2, 4, 8, 1, 3), 20),
}

SPEC_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("entity", "<u4"),
        ("link", "u1"),  # index into planted.LINKS (the ingress link)
        # shape
        ("tags", "u1"),  # 0, 1 (802.1Q) or 2 (802.1ad + 802.1Q)
        ("ipver", "u1"),  # 4 or 6 (0 for ARP)
        ("l4", "u1"),
        ("opts", "u1"),
        ("payload", "u1"),  # template id in payloads.PAYLOADS (0: zeros)
        ("paylen", "<u2"),  # payload bytes (template length, or zeros)
        ("ext6", "u1"),  # IPv6 extension header layout (EXT6_*)
        ("ext_id", "<u4"),  # identification of an IPv6 Fragment header
        # link
        ("vlan_outer", "<u2"),
        ("vlan_inner", "<u2"),
        ("src_mac", "<u8"),
        # IP
        ("src4", "<u4"),
        ("dst4", "<u4"),
        ("src6", "u1", (16,)),
        ("dst6", "u1", (16,)),
        ("ttl", "u1"),
        ("ip_id", "<u2"),
        ("frag", "<u2"),  # IPv4 flags+offset field as on the wire (DF 0x4000, MF 0x2000)
        ("udp_len", "<u2"),  # UDP length when it differs from this frame (fragmented datagram)
        # TCP / UDP
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("seq", "<u4"),
        ("ack", "<u4"),
        ("tcp_flags", "u1"),
        ("window", "<u2"),
        ("mss", "<u2"),
        ("tsval", "<u4"),
        ("tsecr", "<u4"),
        ("pay_id", "<u2"),  # written over the payload's first 2 bytes when the template says so
        # ICMP
        ("icmp_type", "u1"),
        ("icmp_code", "u1"),
        ("icmp_id", "<u2"),
        ("icmp_seq", "<u2"),
        # quoted packet of an ICMP error
        ("in_proto", "u1"),
        ("in_ttl", "u1"),
        ("in_ip_id", "<u2"),
        ("in_len", "<u2"),  # the quoted packet's IP total length (v4) / payload length (v6)
        ("in_src4", "<u4"),
        ("in_dst4", "<u4"),
        ("in_src6", "u1", (16,)),
        ("in_dst6", "u1", (16,)),
        ("in_sport", "<u2"),  # for a quoted ICMP echo: its id
        ("in_dport", "<u2"),  # ... and its sequence number
        ("in_seq", "<u4"),
    ]
)

Spec = npt.NDArray[np.void]
U8 = npt.NDArray[np.uint8]
_RAW_ROW = np.dtype((np.void, SPEC_DTYPE.itemsize))


def take_rows(rows: Spec, idx: npt.NDArray[np.intp]) -> Spec:
    """``rows[idx]`` for SPEC rows, gathered as raw records (numpy copies structured
    rows with sub-array fields field by field, about 25 times slower)."""
    return np.ascontiguousarray(rows).view(_RAW_ROW)[idx].view(SPEC_DTYPE)


def _l2_len(tags: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    return 14 + 4 * tags.astype(np.int64)


def _l4_len(rows: Spec) -> npt.NDArray[np.int64]:
    l4 = rows["l4"]
    opt_len = np.zeros(len(rows), dtype=np.int64)
    for code, (_, length) in TCP_OPTION_LAYOUTS.items():
        opt_len[rows["opts"] == code] = length
    inner_ip = np.where(rows["ipver"] == 6, 40, 20)
    out = np.zeros(len(rows), dtype=np.int64)
    pay = rows["paylen"].astype(np.int64)
    out[l4 == L4_TCP] = 20 + opt_len[l4 == L4_TCP] + pay[l4 == L4_TCP]
    out[l4 == L4_UDP] = 8 + pay[l4 == L4_UDP]
    out[l4 == L4_ICMP_ECHO] = 8 + pay[l4 == L4_ICMP_ECHO]
    out[l4 == L4_ICMP_ERR] = 8 + inner_ip[l4 == L4_ICMP_ERR] + 8
    out[l4 == L4_FRAG_TAIL] = pay[l4 == L4_FRAG_TAIL]
    return out


def ext6_len(rows: Spec) -> npt.NDArray[np.int64]:
    """Bytes of IPv6 extension headers of each row (0 for IPv4)."""
    out = np.zeros(len(rows), dtype=np.int64)
    for code, (_, length) in EXT6_LAYOUTS.items():
        out[(rows["ext6"] == code) & (rows["ipver"] == 6)] = length
    return out


def frame_lengths(rows: Spec) -> npt.NDArray[np.int64]:
    """Frame length in bytes of each row (Ethernet header to the end)."""
    l3 = np.where(rows["ipver"] == 6, 40 + ext6_len(rows), 20)
    length = _l2_len(rows["tags"]) + l3 + _l4_len(rows)
    arp = rows["l4"] == L4_ARP
    length[arp] = _l2_len(rows["tags"][arp]) + 28
    # Ethernet minimum frame (60 bytes without FCS): pad like a NIC would
    return np.maximum(length, 60)


def _put(buf: U8, off: int, values: npt.ArrayLike, fmt: str) -> None:
    """Write one header field (big-endian ``fmt``) into columns ``off..`` of every row."""
    v = np.asarray(values).astype(fmt, copy=False)
    size = v.dtype.itemsize
    buf[:, off : off + size] = np.ascontiguousarray(v).view(np.uint8).reshape(-1, size)


def _word_sum(block: U8) -> npt.NDArray[np.uint64]:
    """Sum of a byte block's big-endian 16-bit words, per row (odd length zero-padded)."""
    if block.shape[1] % 2:
        block = np.concatenate([block, np.zeros((block.shape[0], 1), dtype=np.uint8)], axis=1)
    words = np.ascontiguousarray(block).view(">u2")
    return words.sum(axis=1, dtype=np.uint64)


def _fold(total: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint16]:
    """Ones-complement of the end-around-carry fold of a word sum (RFC 1071)."""
    s = total.astype(np.uint64)
    for _ in range(4):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return (~s & np.uint64(0xFFFF)).astype(np.uint16)


def _ipv4_header(
    buf: U8, off: int, ver_ihl_len: npt.ArrayLike, rows_fields: dict[str, npt.ArrayLike]
) -> None:
    f = rows_fields
    _put(buf, off, 0x45, "u1")
    _put(buf, off + 1, 0, "u1")
    _put(buf, off + 2, ver_ihl_len, ">u2")
    _put(buf, off + 4, f["id"], ">u2")
    _put(buf, off + 6, f["frag"], ">u2")
    _put(buf, off + 8, f["ttl"], "u1")
    _put(buf, off + 9, f["proto"], "u1")
    _put(buf, off + 10, 0, ">u2")
    _put(buf, off + 12, f["src"], ">u4")
    _put(buf, off + 16, f["dst"], ">u4")
    _put(buf, off + 10, _fold(_word_sum(buf[:, off : off + 20])), ">u2")


def _ipv6_header(
    buf: U8, off: int, payload_len: npt.ArrayLike, nxt: int, hlim: npt.ArrayLike, src: U8, dst: U8
) -> None:
    _put(buf, off, 0x60000000, ">u4")
    _put(buf, off + 4, payload_len, ">u2")
    _put(buf, off + 6, nxt, "u1")
    _put(buf, off + 7, hlim, "u1")
    buf[:, off + 8 : off + 24] = src
    buf[:, off + 24 : off + 40] = dst


def _tcp_options(buf: U8, off: int, rows: Spec, layout: int) -> None:
    if layout == OPT_NONE:
        return
    mss = rows["mss"]
    if layout == OPT_MSS:
        _put(buf, off, 0x0204, ">u2")
        _put(buf, off + 2, mss, ">u2")
    elif layout in (OPT_LINUX_SYN, OPT_LINUX_SYNACK):
        _put(buf, off, 0x0204, ">u2")
        _put(buf, off + 2, mss, ">u2")
        _put(buf, off + 4, 0x0402, ">u2")  # SACK permitted
        _put(buf, off + 6, 0x080A, ">u2")  # timestamps
        _put(buf, off + 8, rows["tsval"], ">u4")
        _put(buf, off + 12, rows["tsecr"], ">u4")
        _put(buf, off + 16, 0x01030307, ">u4")  # NOP, window scale 7
    elif layout == OPT_WINDOWS_SYN:
        _put(buf, off, 0x0204, ">u2")
        _put(buf, off + 2, mss, ">u2")
        _put(buf, off + 4, 0x01030308, ">u4")  # NOP, window scale 8
        _put(buf, off + 8, 0x01010402, ">u4")  # NOP, NOP, SACK permitted
    else:
        raise ValueError(f"unknown TCP option layout {layout}")


def _payload(buf: U8, off: int, rows: Spec, template: int, length: int) -> None:
    if length == 0 or template == 0:
        return  # zeros
    tpl = PAYLOADS[template]
    buf[:, off : off + length] = np.frombuffer(tpl.data, dtype=np.uint8)
    if tpl.id_at is not None:
        _put(buf, off + tpl.id_at, rows["pay_id"], ">u2")


def _build_group(rows: Spec) -> U8:
    """Frames for rows that all share one shape: an ``(n, L)`` block."""
    n = len(rows)
    first = rows[0]
    tags, ipver, l4 = int(first["tags"]), int(first["ipver"]), int(first["l4"])
    opts, tpl, paylen = int(first["opts"]), int(first["payload"]), int(first["paylen"])
    length = int(frame_lengths(rows[:1])[0])
    buf = np.zeros((n, length), dtype=np.uint8)
    # Ethernet II, then the VLAN tags (outer 802.1ad when stacked)
    _put(buf, 0, SENSOR_MAC, ">u8")  # written as 8 bytes, the first 2 are overwritten below
    buf[:, 0:6] = buf[:, 2:8]
    buf[:, 6:12] = rows["src_mac"].astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:8]
    off = 12
    if tags == 1:
        _put(buf, off, TPID_8021Q, ">u2")
        _put(buf, off + 2, rows["vlan_outer"] & 0x0FFF, ">u2")
        off += 4
    elif tags == 2:
        _put(buf, off, TPID_8021AD, ">u2")
        _put(buf, off + 2, rows["vlan_outer"] & 0x0FFF, ">u2")
        _put(buf, off + 4, TPID_8021Q, ">u2")
        _put(buf, off + 6, rows["vlan_inner"] & 0x0FFF, ">u2")
        off += 8
    if l4 == L4_ARP:
        _put(buf, off, ETH_ARP, ">u2")
        off += 2
        _put(buf, off, 0x00010800, ">u4")  # Ethernet, IPv4
        _put(buf, off + 4, 0x06040001, ">u4")  # hlen 6, plen 4, request
        buf[:, off + 8 : off + 14] = buf[:, 6:12]
        _put(buf, off + 14, rows["src4"], ">u4")
        _put(buf, off + 24, rows["dst4"], ">u4")
        return buf
    _put(buf, off, ETH_IPV6 if ipver == 6 else ETH_IPV4, ">u2")
    ip = off + 2
    ext = int(first["ext6"]) if ipver == 6 else EXT6_NONE
    ext_len = EXT6_LAYOUTS[ext][1]
    l3len = 40 + ext_len if ipver == 6 else 20
    t = ip + l3len
    l4len = int(_l4_len(rows[:1])[0])
    if ipver == 4:
        proto = {L4_TCP: PROTO_TCP, L4_UDP: PROTO_UDP, L4_ICMP_ECHO: PROTO_ICMP, L4_ICMP_ERR: PROTO_ICMP}
        p = proto.get(l4, PROTO_UDP) if l4 != L4_FRAG_TAIL else rows["in_proto"]
        _ipv4_header(
            buf,
            ip,
            l3len + l4len,
            {
                "id": rows["ip_id"],
                "frag": rows["frag"],
                "ttl": rows["ttl"],
                "proto": p,
                "src": rows["src4"],
                "dst": rows["dst4"],
            },
        )
        pseudo = _word_sum(buf[:, ip + 12 : ip + 20])
    else:
        nxt = {L4_TCP: PROTO_TCP, L4_UDP: PROTO_UDP}.get(l4, PROTO_ICMPV6)
        # the payload length counts the extension headers; the pseudo-header does not (RFC 8200 8.1)
        chain = (*EXT6_LAYOUTS[ext][0], nxt)
        _ipv6_header(buf, ip, ext_len + l4len, chain[0], rows["ttl"], rows["src6"], rows["dst6"])
        pseudo = _word_sum(buf[:, ip + 8 : ip + 40])
        e = ip + 40
        for kind, following in itertools.pairwise(chain):
            _put(buf, e, following, "u1")
            if kind == 44:  # Fragment: reserved, offset 0 and M = 0, identification
                _put(buf, e + 4, rows["ext_id"], ">u4")
            else:  # Hop-by-Hop / Destination Options: length 0 (8 bytes), one PadN option of 4
                _put(buf, e + 2, 0x0104, ">u2")
            e += 8
    if l4 == L4_TCP:
        opt_len = TCP_OPTION_LAYOUTS[opts][1]
        _put(buf, t, rows["sport"], ">u2")
        _put(buf, t + 2, rows["dport"], ">u2")
        _put(buf, t + 4, rows["seq"], ">u4")
        _put(buf, t + 8, rows["ack"], ">u4")
        _put(buf, t + 12, ((20 + opt_len) // 4) << 4, "u1")
        _put(buf, t + 13, rows["tcp_flags"], "u1")
        _put(buf, t + 14, rows["window"], ">u2")
        _tcp_options(buf, t + 20, rows, opts)
        _payload(buf, t + 20 + opt_len, rows, tpl, paylen)
        total = pseudo + np.uint64(PROTO_TCP + l4len) + _word_sum(buf[:, t : t + l4len])
        _put(buf, t + 16, _fold(total), ">u2")
    elif l4 == L4_UDP:
        udp_len = np.where(rows["udp_len"] > 0, rows["udp_len"], l4len).astype(np.uint64)
        _put(buf, t, rows["sport"], ">u2")
        _put(buf, t + 2, rows["dport"], ">u2")
        _put(buf, t + 4, udp_len, ">u2")
        _payload(buf, t + 8, rows, tpl, paylen)
        # a fragmented datagram's missing part is zeros: it adds nothing to the sum
        total = pseudo + np.uint64(PROTO_UDP) + udp_len + _word_sum(buf[:, t : t + l4len])
        csum = _fold(total)
        csum[csum == 0] = 0xFFFF  # RFC 768: zero means "no checksum"
        _put(buf, t + 6, csum, ">u2")
    elif l4 == L4_ICMP_ECHO:
        _put(buf, t, rows["icmp_type"], "u1")
        _put(buf, t + 1, rows["icmp_code"], "u1")
        _put(buf, t + 4, rows["icmp_id"], ">u2")
        _put(buf, t + 6, rows["icmp_seq"], ">u2")
        _payload(buf, t + 8, rows, tpl, paylen)
        _icmp_checksum(buf, t, l4len, ipver, pseudo)
    elif l4 == L4_ICMP_ERR:
        _put(buf, t, rows["icmp_type"], "u1")
        _put(buf, t + 1, rows["icmp_code"], "u1")
        q = t + 8
        if ipver == 4:
            _ipv4_header(
                buf,
                q,
                rows["in_len"],
                {
                    "id": rows["in_ip_id"],
                    "frag": 0,
                    "ttl": rows["in_ttl"],
                    "proto": rows["in_proto"],
                    "src": rows["in_src4"],
                    "dst": rows["in_dst4"],
                },
            )
            qt = q + 20
        else:
            _ipv6_header(buf, q, rows["in_len"], 0, rows["in_ttl"], rows["in_src6"], rows["in_dst6"])
            _put(buf, q + 6, rows["in_proto"], "u1")
            qt = q + 40
        _quoted_transport(buf, qt, rows)
        _icmp_checksum(buf, t, l4len, ipver, pseudo)
    elif l4 == L4_FRAG_TAIL:
        pass  # zeros: the rest of a zero-filled datagram
    return buf


def _quoted_transport(buf: U8, off: int, rows: Spec) -> None:
    """The first 8 bytes of the quoted packet's transport header."""
    proto = rows["in_proto"]
    icmp = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
    # TCP and UDP both start with the ports; ICMP echo with type, code, checksum
    sport = np.where(icmp, 0, rows["in_sport"])
    dport = np.where(icmp, 0, rows["in_dport"])
    _put(buf, off, sport, ">u2")
    _put(buf, off + 2, dport, ">u2")
    tcp = proto == PROTO_TCP
    udp = proto == PROTO_UDP
    word2 = np.where(tcp, rows["in_seq"], 0).astype(np.uint64)
    # UDP: length (the quoted datagram's), checksum 0 (not verifiable from a quote)
    udp_len = rows["in_len"].astype(np.uint64) - np.where(rows["ipver"] == 6, 0, 20).astype(np.uint64)
    word2 = np.where(udp, udp_len << np.uint64(16), word2)
    # ICMP echo request: type 8 / 128, code 0, checksum, id, seq
    echo_type = np.where(proto == PROTO_ICMPV6, 128, 8).astype(np.uint64)
    word1 = np.where(icmp, echo_type << np.uint64(24), (sport.astype(np.uint64) << np.uint64(16)) | dport)
    word2 = np.where(icmp, (rows["in_sport"].astype(np.uint64) << np.uint64(16)) | rows["in_dport"], word2)
    _put(buf, off, word1, ">u4")
    _put(buf, off + 4, word2, ">u4")


def _icmp_checksum(buf: U8, t: int, l4len: int, ipver: int, pseudo: npt.NDArray[np.uint64]) -> None:
    total = _word_sum(buf[:, t : t + l4len])
    if ipver == 6:  # ICMPv6 covers an IPv6 pseudo-header (RFC 4443 section 2.3)
        total = total + pseudo + np.uint64(PROTO_ICMPV6 + l4len)
    _put(buf, t + 2, _fold(total), ">u2")


def _shape_key(rows: Spec) -> npt.NDArray[np.uint64]:
    k = rows["tags"].astype(np.uint64)
    k = (k << np.uint64(4)) | rows["ipver"]
    k = (k << np.uint64(4)) | rows["l4"]
    k = (k << np.uint64(4)) | rows["opts"]
    k = (k << np.uint64(2)) | rows["ext6"]
    k = (k << np.uint64(8)) | rows["payload"]
    k = (k << np.uint64(16)) | rows["paylen"]
    return k


FrameGroup = tuple[npt.NDArray[np.intp], U8]


def build_frame_groups(rows: Spec) -> tuple[npt.NDArray[np.int64], list[FrameGroup]]:
    """Frames for any rows: each frame's length, and groups of (row indices, ``(k, L)`` frames)
    of one shape, so no block is wider than its own frames."""
    lengths = frame_lengths(rows)
    keys, inverse = np.unique(_shape_key(rows), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    groups = []
    for g in range(len(keys)):
        idx = order[bounds[g] : bounds[g + 1]]
        groups.append((idx, _build_group(take_rows(rows, idx))))
    return lengths, groups


def build_frames(rows: Spec) -> tuple[U8, npt.NDArray[np.int64]]:
    """Frames for any rows, in row order: a ``(n, max_len)`` block and each frame's length."""
    lengths, groups = build_frame_groups(rows)
    out = np.zeros((len(rows), int(lengths.max()) if len(rows) else 0), dtype=np.uint8)
    for idx, block in groups:
        out[idx, : block.shape[1]] = block
    return out, lengths
