"""The vectorized frame decoder on hand-built frames: every link type and the rare shapes."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest

from sensor.decode import BLOCK_ROWS, decode_frames
from sensor.fields import (
    FRAG_DF,
    FRAG_MF,
    LAYER_INNER,
    LAYER_INNER_PORTS,
    LAYER_IP,
    LAYER_TRANSPORT,
    PAYLOAD_HEAD,
    TCP_ACK,
    TCP_SYN,
    Status,
)
from tests.sensor.conftest import eth, ip4, tcp, udp

A, B = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8:ffff::2"


def dec(frames: list[bytes], linktype: int | list[int] = 1, wire: list[int] | None = None) -> np.ndarray:
    """Frames back to back in one buffer, no slack after the last (decode_frames must cope)."""
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lens = np.array([len(f) for f in frames], dtype=np.int64)
    offs = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
    lt = np.array(linktype, dtype=np.uint16) if isinstance(linktype, list) else linktype
    return decode_frames(buf, offs, lens, np.array(wire or lens), np.arange(len(frames), dtype=np.int64), lt)


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def ip6(src: str, dst: str, nh: int, payload: bytes, hlim: int = 60) -> bytes:
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), nh, hlim, v6(src), v6(dst)) + payload


def ext(nh: int, body_len8: int = 0) -> bytes:
    """A hop-by-hop / destination-options style header of (body_len8 + 1) * 8 bytes."""
    return bytes([nh, body_len8]) + b"\x01\x04\0\0\0\0" + bytes(8 * body_len8)


def frag6(nh: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack(">BBHI", nh, 0, offset | int(more), ident)


def icmp(typ: int, code: int, body: bytes) -> bytes:
    return struct.pack(">BBHI", typ, code, 0, 0) + body


SYN = tcp(40000, 23, seq=0xDEADBEEF, ack=7, flags=TCP_SYN, window=14600)


def test_plain_ipv4_tcp_syn() -> None:
    r = dec([eth(ip4(A, B, 6, SYN, ttl=250, ident=54321))])[0]
    assert r["status"] == Status.OK and r["layers"] == LAYER_IP | LAYER_TRANSPORT
    assert (r["ip_version"], r["protocol"], r["ttl"], r["ip_id"], r["ip_len"]) == (4, 6, 250, 54321, 40)
    assert (r["src_ip4"], r["dst_ip4"]) == (v4(A), v4(B))
    assert (r["src_port"], r["dst_port"], r["tcp_seq"], r["tcp_ack"]) == (40000, 23, 0xDEADBEEF, 7)
    assert (r["tcp_flags"], r["tcp_window"], r["tcp_hdr_len"], r["tcp_mss"]) == (TCP_SYN, 14600, 20, 0)
    assert r["src_mac"] == 0x020000000001 and r["vlan"] == 0


def test_vlan_stacks_of_any_depth() -> None:
    tags = [(0x88A8, 0x0064), (0x8100, 0x2C8), (0x9100, 7), (0x8100, 9)]
    frames = [eth(ip4(A, B, 6, SYN), vlans=tags[:k]) for k in range(5)]
    got = dec(frames)
    assert got["vlan"].tolist() == [0, 100, 100, 100, 100]
    assert (got["status"] == Status.OK).all()
    assert got["dst_port"].tolist() == [23] * 5
    cut = eth(b"", ethertype=0x8100, vlans=[(0x8100, 5)])[:16]  # a tag cut in the middle
    assert dec([cut])[0]["status"] == Status.TRUNCATED_LINK


def test_non_ip_ethertype() -> None:
    r = dec([eth(bytes(28), ethertype=0x0806)])[0]
    assert r["status"] == Status.NOT_IP and r["layers"] == 0 and r["src_mac"] == 0x020000000001


@pytest.mark.parametrize(("linktype", "header"), [
    (0, struct.pack("<I", 2)), (0, struct.pack(">I", 2)),  # BSD loopback, either byte order
    (108, struct.pack(">I", 2)),  # OpenBSD loop: network order
    (101, b""), (12, b""), (228, b""),
])
def test_loopback_and_raw_ipv4(linktype: int, header: bytes) -> None:
    r = dec([header + ip4(A, B, 17, udp(1234, 53))], linktype)[0]
    assert (r["status"], r["ip_version"], r["dst_port"], r["linktype"]) == (Status.OK, 4, 53, linktype)


@pytest.mark.parametrize(("linktype", "header"), [
    (0, struct.pack("<I", 30)), (0, struct.pack(">I", 24)), (0, struct.pack("<I", 10)),
    (101, b""), (229, b""),
])
def test_loopback_and_raw_ipv6(linktype: int, header: bytes) -> None:
    r = dec([header + ip6(A6, B6, 17, udp(1234, 53))], linktype)[0]
    assert (r["status"], r["ip_version"], r["dst_port"]) == (Status.OK, 6, 53)
    assert (bytes(r["src_ip6"]), bytes(r["dst_ip6"])) == (v6(A6), v6(B6))


def test_linux_cooked_v1_and_v2() -> None:
    mac = bytes.fromhex("00163e112233")
    sll = struct.pack(">HHH6sHH", 0, 1, 6, mac, 0, 0x0800)
    sll2 = struct.pack(">HHIHBB6sH", 0x86DD, 0, 3, 1, 0, 6, mac, 0)
    got = dec([sll + ip4(A, B, 6, SYN), sll2 + ip6(A6, B6, 6, SYN)], [113, 276])
    assert got["ip_version"].tolist() == [4, 6]
    assert got["src_mac"].tolist() == [0x00163E112233] * 2
    assert got["dst_port"].tolist() == [23, 23]


def test_unknown_link_type() -> None:
    r = dec([bytes(40)], 147)[0]
    assert r["status"] == Status.UNKNOWN_LINKTYPE and r["layers"] == 0


def test_ipv4_options_move_the_transport() -> None:
    r = dec([eth(ip4(A, B, 6, SYN, options=b"\x01\x01\x01\x00"))])[0]
    assert (r["status"], r["dst_port"], r["tcp_seq"], r["ip_len"]) == (Status.OK, 23, 0xDEADBEEF, 44)


def test_ipv4_fragments_ports_only_in_the_first() -> None:
    first = eth(ip4(A, B, 17, udp(5000, 53, b"x" * 16), ident=9, flags_frag=0x2000))
    later = eth(ip4(A, B, 17, b"y" * 24, ident=9, flags_frag=0x2000 | 3))
    df = eth(ip4(A, B, 17, udp(5000, 53), flags_frag=0x4000))
    got = dec([first, later, df])
    assert got["frag_flags"].tolist() == [FRAG_MF, FRAG_MF, FRAG_DF]
    assert got["frag_offset"].tolist() == [0, 24, 0]
    assert got["dst_port"].tolist() == [53, 0, 53]
    assert got["layers"].tolist() == [3, LAYER_IP, 3]
    assert (got["status"] == Status.OK).all()


def test_ipv6_extension_headers_to_the_transport() -> None:
    hbh_dst = ip6(A6, B6, 0, ext(60) + ext(6, 1) + SYN)
    ah = ip6(A6, B6, 51, bytes([17, 4]) + bytes(22) + udp(1, 2))  # AH: (4 + 2) * 4 = 24 bytes
    routing = ip6(A6, B6, 43, bytes([58, 0, 0, 0]) + bytes(4) + icmp(128, 0, b""))
    got = dec([eth(p, 0x86DD) for p in (hbh_dst, ah, routing)])
    assert got["protocol"].tolist() == [6, 17, 58]
    assert got["dst_port"].tolist() == [23, 2, 0]
    assert got["icmp_type"].tolist() == [0, 0, 128]
    assert (got["status"] == Status.OK).all()


def test_ipv6_fragment_header() -> None:
    first = ip6(A6, B6, 44, frag6(17, 0, True, 0xABCDEF01) + udp(7, 53, b"z" * 8))
    later = ip6(A6, B6, 44, frag6(17, 1448, False, 0xABCDEF01) + b"z" * 16)
    got = dec([eth(first, 0x86DD), eth(later, 0x86DD)])
    assert got["ip_id"].tolist() == [0xABCDEF01] * 2
    assert got["frag_offset"].tolist() == [0, 1448]
    assert got["frag_flags"].tolist() == [FRAG_MF, 0]
    assert got["dst_port"].tolist() == [53, 0]
    assert got["protocol"].tolist() == [17, 17]


def test_ipv6_extension_chain_cut_short() -> None:
    pkt = eth(ip6(A6, B6, 0, ext(60, 2)), 0x86DD)
    r = dec([pkt[:14 + 40 + 4]])[0]  # 4 bytes of the hop-by-hop header captured
    assert r["status"] == Status.TRUNCATED_EXT_HEADERS and r["ip_version"] == 6


def test_icmp_error_quotes_the_offending_header() -> None:
    quoted = ip4(B, A, 17, udp(33434, 53))[:28]
    got = dec([
        eth(ip4("203.0.113.9", A, 1, icmp(3, 3, quoted))),
        eth(ip4("203.0.113.9", A, 1, icmp(11, 0, ip4(B, A, 6, SYN, options=b"\x01" * 4)[:28]))),
        eth(ip4("203.0.113.9", A, 1, icmp(3, 1, ip4(B, A, 6, SYN)[:20]))),  # no ports quoted
        eth(ip4("203.0.113.9", A, 1, icmp(0, 0, quoted))),  # an echo reply quotes nothing
    ])
    assert got["icmp_type"].tolist() == [3, 11, 3, 0]
    assert got["inner_ip_version"].tolist() == [4, 4, 4, 0]
    assert got["inner_protocol"].tolist() == [17, 6, 6, 0]
    assert got["inner_src_ip4"].tolist() == [v4(B)] * 3 + [0]
    assert got["inner_dst_ip4"].tolist() == [v4(A)] * 3 + [0]
    assert got["inner_src_port"].tolist() == [33434, 40000, 0, 0]
    assert got["inner_dst_port"].tolist() == [53, 23, 0, 0]
    inner = LAYER_INNER | LAYER_INNER_PORTS
    assert [int(x) & inner for x in got["layers"]] == [inner, inner, LAYER_INNER, 0]
    assert got["src_port"].tolist() == [0] * 4  # ICMP has no ports of its own
    assert (got["status"] == Status.OK).all()


def test_icmpv6_error_quotes_ipv6() -> None:
    quoted = ip6(B6, A6, 6, SYN)[:48]
    r = dec([eth(ip6("2001:db8::99", A6, 58, icmp(1, 4, quoted)), 0x86DD)])[0]
    assert (r["icmp_type"], r["icmp_code"], r["inner_ip_version"], r["inner_protocol"]) == (1, 4, 6, 6)
    assert (bytes(r["inner_src_ip6"]), bytes(r["inner_dst_ip6"])) == (v6(B6), v6(A6))
    assert (r["inner_src_port"], r["inner_dst_port"]) == (40000, 23)


def test_tcp_options_shape_and_mss() -> None:
    linux = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
    nmap = b"\x03\x03\x0a\x01\x02\x04\x05\x78\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02"
    eol = b"\x02\x04\x01\x00\x00\x01\x01\x01"  # EOL ends the list: later bytes are padding
    many = b"\x01" * 12  # more than 8 options: the first 8 are kept
    bad = b"\x02\x04\x05\xb4\x08\x30\x00\x00"  # a length past the options' end stops the walk
    frames = [eth(ip4(A, B, 6, tcp(1, 2, options=o))) for o in (linux, nmap, eol, many, bad)]
    got = dec(frames)
    kinds = [list(int(k).to_bytes(8, "little").rstrip(b"\0")) for k in got["tcp_opt_kinds"]]
    assert kinds == [[2, 4, 8, 1, 3], [3, 1, 2, 8, 4], [2], [1] * 8, [2, 8]]
    assert got["tcp_mss"].tolist() == [1460, 1400, 256, 0, 1460]
    assert got["tcp_hdr_len"].tolist() == [40, 40, 28, 32, 28]
    assert (got["status"] == Status.OK).all()


def test_tcp_options_cut_by_the_snap_length_are_read_as_far_as_they_go() -> None:
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07"
    full = eth(ip4(A, B, 6, tcp(1, 2, flags=TCP_SYN | TCP_ACK, options=opts)))
    got = dec([full[:14 + 20 + 24], full[:14 + 20 + 22]], wire=[len(full)] * 2)
    assert got["status"].tolist() == [Status.OK, Status.OK]
    assert got["tcp_mss"].tolist() == [1460, 0]
    assert got["tcp_opt_kinds"].tolist() == [2, 2]
    assert got["tcp_flags"].tolist() == [TCP_SYN | TCP_ACK] * 2


def test_truncations_and_bad_headers_are_reasons_not_errors() -> None:
    good = eth(ip4(A, B, 6, SYN))
    v5 = bytearray(good)
    v5[14] = 0x55
    doff = bytearray(good)
    doff[14 + 20 + 12] = 0x40
    got = dec([good[:10], good[:30], good[:14 + 20 + 6], bytes(v5), bytes(doff),
               eth(ip4(A, B, 17, udp(1, 2)))[:14 + 20 + 6]])
    assert got["status"].tolist() == [
        Status.TRUNCATED_LINK, Status.TRUNCATED_IP, Status.TRUNCATED_TRANSPORT,
        Status.BAD_IP_HEADER, Status.BAD_TRANSPORT_HEADER, Status.TRUNCATED_TRANSPORT]
    # what was decoded before the problem stays: addresses, and ports of a cut TCP/UDP header
    assert got["src_ip4"].tolist() == [0, 0, v4(A), 0, v4(A), v4(A)]
    assert got["dst_port"].tolist() == [0, 0, 23, 0, 23, 2]
    assert got["layers"].tolist() == [0, 0, LAYER_IP, 0, LAYER_IP, LAYER_IP]


def test_ethernet_padding_is_not_read_as_tcp_options() -> None:
    frame = eth(ip4(A, B, 6, tcp(1, 2))) + b"\x02\x04\x05\xb4\x00\x00"  # padding to 60 bytes
    r = dec([frame])[0]
    assert (r["tcp_mss"], r["tcp_opt_kinds"], r["status"]) == (0, 0, Status.OK)


def test_per_frame_link_types_and_interfaces_in_one_call() -> None:
    frames = [eth(ip4(A, B, 6, SYN)), ip6(A6, B6, 17, udp(3, 4)),
              struct.pack("<I", 2) + ip4(A, B, 1, icmp(8, 0, b""))]
    got = dec(frames, [1, 101, 0])
    assert got["ip_version"].tolist() == [4, 6, 4]
    assert got["protocol"].tolist() == [6, 17, 1]
    assert got["linktype"].tolist() == [1, 101, 0]


def test_decoding_in_one_call_equals_decoding_one_by_one() -> None:
    rng = np.random.default_rng(3)
    shapes = [
        eth(ip4(A, B, 6, SYN)), eth(ip4(A, B, 6, tcp(1, 2, options=b"\x02\x04\x05\xb4"))),
        eth(ip6(A6, B6, 0, ext(17) + udp(9, 9)), 0x86DD), eth(bytes(28), 0x0806),
        eth(ip4(A, B, 1, icmp(3, 3, ip4(B, A, 17, udp(1, 2))[:28])), vlans=[(0x8100, 12)]),
    ]
    picks = rng.integers(0, len(shapes), BLOCK_ROWS + 500)
    frames = [shapes[int(i)][: int(rng.integers(0, 90))] for i in picks]
    together = dec(frames)
    together["ts_ns"] = 0  # dec() numbers the frames of each call
    for lo, hi in ((0, 600), (BLOCK_ROWS, BLOCK_ROWS + 100)):
        alone = np.concatenate([dec([f]) for f in frames[lo:hi]])
        alone["ts_ns"] = 0
        assert together[lo:hi].tobytes() == alone.tobytes()


def test_empty_batch() -> None:
    none = np.zeros(0, np.int64)
    assert decode_frames(np.zeros(0, np.uint8), none, none, none, none, 1).size == 0


def test_option_layouts_learnt_from_some_rows_agree_with_the_general_walk() -> None:
    """Many rows take the layout path (>= 64 rows with options); one row alone takes the
    general walk: both must give the same kinds and MSS for every shape, bad ones included."""
    rng = np.random.default_rng(11)
    linux = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
    shapes = [linux, b"\x02\x04\x05\x78", b"\x01\x01\x04\x02", b"\x02\x04\x05\xb4\x08\x30\x00\x00",
              b"\x03\x03\x0a\x00", b"\x02\x03\x05\xb4\x02\x04\x01\x00" + b"\x01" * 4]
    frames = []
    for _ in range(600):
        opts = bytearray(shapes[int(rng.integers(0, len(shapes)))])
        if opts[:2] == b"\x02\x04" and len(opts) == 20:
            opts[8:16] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()  # timestamps vary
        frame = eth(ip4(A, B, 6, tcp(1, 2, options=bytes(opts))))
        frames.append(frame[: len(frame) - int(rng.integers(0, 3)) * 3])  # some cut by the snap length
    together = dec(frames)
    alone = np.concatenate([dec([f]) for f in frames])
    assert together["tcp_opt_kinds"].tolist() == alone["tcp_opt_kinds"].tolist()
    assert together["tcp_mss"].tolist() == alone["tcp_mss"].tolist()
    assert len(set(together["tcp_opt_kinds"].tolist())) >= 5


PAYLOAD = bytes(range(0x41, 0x41 + 40))


def _payload_cases() -> list[tuple[bytes, int, bytes]]:
    """(frame, payload_len, payload_head's real bytes)."""
    short = eth(ip4(A, B, 17, udp(5000, 53, PAYLOAD[:5])))  # Ethernet padding follows: not payload
    long_tcp = eth(ip4(A, B, 6, tcp(1, 80, flags=TCP_ACK, options=b"\x01\x01\x08\x0a" + bytes(8)) + PAYLOAD))
    cut = eth(ip4(A, B, 6, tcp(1, 80, flags=TCP_ACK) + PAYLOAD[:30]))[:14 + 40 + 10]
    v6_ext = eth(ip6(A6, B6, 0, ext(60) + ext(17, 1) + udp(7, 161, PAYLOAD[:30])), 0x86DD)
    v6_tcp = eth(ip6(A6, B6, 60, ext(6) + tcp(1, 2, flags=TCP_ACK) + PAYLOAD[:3]), 0x86DD)
    first_frag = eth(ip4(A, B, 17, udp(5000, 53, PAYLOAD)[:8 + 16], flags_frag=0x2000))
    later_frag = eth(ip4(A, B, 17, PAYLOAD[:24], flags_frag=0x2000 | 3))
    v6_frag = eth(ip6(A6, B6, 44, frag6(17, 0, True, 7) + udp(7, 53, PAYLOAD)[:8 + 8]), 0x86DD)
    vlan_opts = eth(ip4(A, B, 17, udp(1, 2, PAYLOAD[:2]), options=b"\x01" * 4), vlans=[(0x8100, 5)])
    lying_udp = bytearray(eth(ip4(A, B, 17, udp(1, 2, PAYLOAD[:4]))))
    lying_udp[14 + 20 + 4:14 + 20 + 6] = (8 + 300).to_bytes(2, "big")  # more than the datagram holds
    echo = eth(ip4(A, B, 1, icmp(8, 0, PAYLOAD[:20])))
    bad_doff = bytearray(eth(ip4(A, B, 6, SYN + PAYLOAD[:8])))
    bad_doff[14 + 20 + 12] = 0x40
    return [
        (short + bytes(60 - len(short)), 5, PAYLOAD[:5]),
        (long_tcp, 40, PAYLOAD[:24]),
        (cut, 30, PAYLOAD[:10]),
        (v6_ext, 30, PAYLOAD[:24]),
        (v6_tcp, 3, PAYLOAD[:3]),
        (first_frag, 40, PAYLOAD[:16]),  # the UDP length declares the whole datagram
        (later_frag, 0, b""),
        (v6_frag, 40, PAYLOAD[:8]),
        (vlan_opts, 2, PAYLOAD[:2]),
        (bytes(lying_udp), 300, PAYLOAD[:4]),
        (echo, 0, b""),
        (bytes(bad_doff), 0, b""),
        (eth(ip4(A, B, 6, SYN)), 0, b""),
    ]


@pytest.mark.parametrize("company", ["fast", "general"])
def test_payload_length_and_head(company: str) -> None:
    """The same frames among plain SYNs (the fast path decodes the block) and among ARP
    frames (the general path does): the declared length, and the first bytes as captured."""
    cases = _payload_cases()
    filler = eth(ip4(A, B, 6, SYN)) if company == "fast" else eth(bytes(28), 0x0806)
    frames = [f for frame, _, _ in cases for f in (frame, filler, filler, filler)]
    got = dec(frames)[::4]
    assert got["payload_len"].tolist() == [n for _, n, _ in cases]
    assert got["payload_cap"].tolist() == [len(h) for _, _, h in cases]
    assert [bytes(h) for h in got["payload_head"]] == [h.ljust(PAYLOAD_HEAD, b"\0") for _, _, h in cases]
    assert got["dst_port"].tolist()[:6] == [53, 80, 80, 161, 2, 53]


def test_many_option_layouts_some_left_to_the_general_walk() -> None:
    """More layouts than one call compares (and than are kept): rows of every layout get the
    kinds and MSS the one-row general walk gives, whichever path took them."""
    rng = np.random.default_rng(5)
    layouts = [bytes([2, 4, 5, 0x80 + k]) + bytes([1]) * (k % 4) + bytes([4, 2]) + bytes([1, 3, 3, k])
               + bytes(-(9 + k % 4) % 4) for k in range(20)]
    frames = [eth(ip4(A, B, 6, tcp(1, 2, options=layouts[int(rng.integers(0, len(layouts)))])))
              for _ in range(3000)]
    for _ in range(2):  # the second time with the layouts learnt
        together = dec(frames)
        alone = np.concatenate([dec([f]) for f in frames[:300]])
        assert together["tcp_opt_kinds"][:300].tolist() == alone["tcp_opt_kinds"].tolist()
        assert together["tcp_mss"][:300].tolist() == alone["tcp_mss"].tolist()
    assert len(set(together["tcp_opt_kinds"].tolist())) >= 4


def test_fast_path_rows_equal_general_path_rows() -> None:
    """Every shape the fast path takes, decoded among plain SYNs (the fast path decodes the
    block) and among ARP frames (the general path does): the same bytes in every field."""
    quoted_udp = ip4(B, A, 17, udp(33434, 53))[:28]
    quoted_tcp = ip4(B, A, 6, SYN)[:28]
    opts = tcp(1, 2, options=b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07")
    shapes = [
        eth(ip4(A, B, 6, SYN)), eth(ip4(A, B, 6, opts), vlans=[(0x8100, 7)]),
        eth(ip4(A, B, 6, opts), vlans=[(0x88A8, 5), (0x8100, 9)]),
        eth(ip4(A, B, 17, udp(1, 53, PAYLOAD[:30]))), eth(ip4(A, B, 1, icmp(8, 0, PAYLOAD[:8]))),
        eth(ip4("203.0.113.9", A, 1, icmp(3, 3, quoted_udp))),
        eth(ip4("203.0.113.9", A, 1, icmp(11, 0, quoted_tcp)), vlans=[(0x8100, 3)]),
        eth(ip4("203.0.113.9", A, 1, icmp(3, 1, quoted_tcp[:20]))),  # no ports quoted
        eth(ip4("203.0.113.9", A, 1, icmp(3, 1, quoted_tcp)))[:14 + 28 + 12],  # quote cut short
        eth(ip4(A, B, 17, udp(5000, 53, PAYLOAD)[:24], flags_frag=0x2000)),  # a first fragment
        eth(ip4(A, B, 6, opts))[:14 + 20 + 26],  # options cut by the snap length
    ]
    got = {}
    for company in ("fast", "general"):
        filler = eth(ip4(A, B, 6, SYN)) if company == "fast" else eth(bytes(28), 0x0806)
        got[company] = dec([f for frame in shapes for f in (frame, filler, filler, filler)])[::4]
    assert np.count_nonzero(got["fast"]["layers"] & LAYER_INNER) == 3
    for i in range(len(shapes)):
        assert got["fast"][i].tobytes() == got["general"][i].tobytes(), f"shape {i}"
