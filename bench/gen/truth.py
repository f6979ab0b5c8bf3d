"""What a correct parser must report for generated packets: ``PACKET_DTYPE`` rows from the plan.

Theory of operation: the generator knows every header value it wrote, so the
per-packet fields the sensor's parser should return (``sensor/fields.py``)
follow from the packet specifications alone, without decoding a byte. A test
parses the generated file and compares every field of every packet with this.
Conventions are those of ``sensor/fields.py``: absent fields 0, IPv4 addresses
as uint32, ports and transport fields only in a first fragment, ``ip_len`` the
IPv4 total length or IPv6 payload length + 40, ``frag_offset`` in bytes, TCP
option kinds packed one byte each (first option in the low byte).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bench.gen.payloads import PAYLOADS
from bench.gen.wire import (
    EXT6_FRAG,
    L4_ARP,
    L4_FRAG_TAIL,
    L4_ICMP_ECHO,
    L4_ICMP_ERR,
    L4_TCP,
    L4_UDP,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_OPTION_LAYOUTS,
    ext6_len,
    frame_lengths,
)

__all__ = ["expected_packets"]


def _tcp_options(rows: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """TCP option bytes and the packed option kinds of each row's option layout."""
    opt_len = np.zeros(len(rows), dtype=np.int64)
    kinds = np.zeros(len(rows), dtype=np.uint64)
    for code, (ks, length) in TCP_OPTION_LAYOUTS.items():
        sel = rows["opts"] == code
        opt_len[sel] = length
        kinds[sel] = sum(k << (8 * i) for i, k in enumerate(ks[:8]))
    return opt_len, kinds


def _l4_len(rows: npt.NDArray[np.void], opt_len: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    l4, pay = rows["l4"], rows["paylen"].astype(np.int64)
    inner_ip = np.where(rows["ipver"] == 6, 40, 20)
    return np.select(
        [l4 == L4_TCP, l4 == L4_UDP, l4 == L4_ICMP_ECHO, l4 == L4_ICMP_ERR, l4 == L4_FRAG_TAIL],
        [20 + opt_len + pay, 8 + pay, 8 + pay, 16 + inner_ip, pay],
        0,
    )


def _payload_heads(
    rows: npt.NDArray[np.void], cap: npt.NDArray[np.int64], width: int
) -> npt.NDArray[np.void]:
    """The first ``cap`` (at most ``width``) payload bytes of each row as the generator wrote them."""
    head = np.zeros((len(rows), width), dtype=np.uint8)
    for code, tpl in PAYLOADS.items():
        sel = rows["payload"] == code
        if not sel.any():
            continue
        data = np.frombuffer(tpl.data[:width].ljust(width, b"\0"), dtype=np.uint8)
        head[sel] = data
        if tpl.id_at is not None:
            ident = rows["pay_id"][sel].astype(np.int64)
            for k, byte in ((tpl.id_at, ident >> 8), (tpl.id_at + 1, ident & 0xFF)):
                if k < width:
                    head[sel, k] = byte
    head[np.arange(width)[None, :] >= cap[:, None]] = 0
    return np.ascontiguousarray(head).view(f"V{width}").reshape(-1)


def expected_packets(
    rows: npt.NDArray[np.void], packet_dtype: np.dtype, snaplen: int = 0, per_link_iface: bool = False
) -> npt.NDArray[np.void]:
    """The parser's expected output (``packet_dtype`` = sensor.fields.PACKET_DTYPE) for ``rows``.

    Assumes snap lengths that keep every header (``snaplen`` 0 or large enough).
    """
    n = len(rows)
    out = np.zeros(n, dtype=packet_dtype)
    l4 = rows["l4"]
    ip = l4 != L4_ARP
    v4, v6 = ip & (rows["ipver"] == 4), ip & (rows["ipver"] == 6)
    wire = frame_lengths(rows)
    out["ts_ns"] = rows["ts_ns"]
    out["iface"] = rows["link"] if per_link_iface else 0
    out["linktype"] = 1
    out["wire_len"] = wire
    out["cap_len"] = np.minimum(wire, snaplen) if snaplen else wire
    out["vlan"] = rows["vlan_outer"]
    out["src_mac"] = rows["src_mac"]
    out["ip_version"] = np.where(ip, rows["ipver"], 0)
    icmp = (l4 == L4_ICMP_ECHO) | (l4 == L4_ICMP_ERR)
    proto = np.select(
        [l4 == L4_TCP, l4 == L4_UDP, icmp & v4, icmp & v6, l4 == L4_FRAG_TAIL],
        [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, rows["in_proto"].astype(np.int64)],
        0,
    )
    out["protocol"] = proto
    out["ttl"] = np.where(ip, rows["ttl"], 0)
    frag = rows["frag"].astype(np.int64)
    out["frag_flags"] = np.where(v4, ((frag & 0x2000) != 0) * 1 + ((frag & 0x4000) != 0) * 2, 0)
    out["frag_offset"] = np.where(v4, (frag & 0x1FFF) * 8, 0)
    frag6 = v6 & (rows["ext6"] == EXT6_FRAG)
    out["ip_id"] = np.where(v4, rows["ip_id"], np.where(frag6, rows["ext_id"], 0))
    opt_len, kinds = _tcp_options(rows)
    l4len = _l4_len(rows, opt_len)
    out["ip_len"] = np.where(v4, 20 + l4len, np.where(v6, 40 + ext6_len(rows) + l4len, 0))
    out["src_ip4"] = np.where(v4, rows["src4"], 0)
    out["dst_ip4"] = np.where(v4, rows["dst4"], 0)
    src6 = np.where(v6[:, None], rows["src6"], 0).astype(np.uint8)
    dst6 = np.where(v6[:, None], rows["dst6"], 0).astype(np.uint8)
    out["src_ip6"] = np.ascontiguousarray(src6).view("V16").reshape(-1)
    out["dst_ip6"] = np.ascontiguousarray(dst6).view("V16").reshape(-1)
    first = ip & ((frag & 0x1FFF) == 0)
    tcp, udp = first & (l4 == L4_TCP), first & (l4 == L4_UDP)
    ports = tcp | udp
    out["src_port"] = np.where(ports, rows["sport"], 0)
    out["dst_port"] = np.where(ports, rows["dport"], 0)
    out["tcp_flags"] = np.where(tcp, rows["tcp_flags"], 0)
    out["tcp_window"] = np.where(tcp, rows["window"], 0)
    out["tcp_seq"] = np.where(tcp, rows["seq"], 0)
    out["tcp_ack"] = np.where(tcp, rows["ack"], 0)
    out["tcp_hdr_len"] = np.where(tcp, 20 + opt_len, 0)
    has_mss = tcp & np.isin(rows["opts"], [c for c, (ks, _) in TCP_OPTION_LAYOUTS.items() if 2 in ks])
    out["tcp_mss"] = np.where(has_mss, rows["mss"], 0)
    out["tcp_opt_kinds"] = np.where(tcp, kinds, 0)
    out["icmp_type"] = np.where(icmp, rows["icmp_type"], 0)
    out["icmp_code"] = np.where(icmp, rows["icmp_code"], 0)
    err = l4 == L4_ICMP_ERR
    out["inner_ip_version"] = np.where(err, rows["ipver"], 0)
    out["inner_protocol"] = np.where(err, rows["in_proto"], 0)
    out["inner_src_ip4"] = np.where(err & v4, rows["in_src4"], 0)
    out["inner_dst_ip4"] = np.where(err & v4, rows["in_dst4"], 0)
    isrc6 = np.where((err & v6)[:, None], rows["in_src6"], 0).astype(np.uint8)
    idst6 = np.where((err & v6)[:, None], rows["in_dst6"], 0).astype(np.uint8)
    out["inner_src_ip6"] = np.ascontiguousarray(isrc6).view("V16").reshape(-1)
    out["inner_dst_ip6"] = np.ascontiguousarray(idst6).view("V16").reshape(-1)
    inner_ports = err & np.isin(rows["in_proto"], [PROTO_TCP, PROTO_UDP])
    out["inner_src_port"] = np.where(inner_ports, rows["in_sport"], 0)
    out["inner_dst_port"] = np.where(inner_ports, rows["in_dport"], 0)
    # the TCP/UDP payload: declared length, and the first bytes that were captured
    # (a fragmented datagram's UDP header declares the whole datagram: udp_len)
    declared = np.where(udp & (rows["udp_len"] > 0), rows["udp_len"].astype(np.int64) - 8, rows["paylen"])
    paylen = np.where(tcp | udp, declared, 0).astype(np.int64)
    l3 = np.where(v6, 40 + ext6_len(rows), 20)
    start = 14 + 4 * rows["tags"].astype(np.int64) + l3 + np.where(tcp, 20 + opt_len, 8)
    in_frame = np.minimum(rows["paylen"].astype(np.int64), out["cap_len"].astype(np.int64) - start)
    width = packet_dtype["payload_head"].itemsize  # the bytes the parser keeps
    cap = np.clip(np.minimum(paylen, in_frame), 0, width)
    out["payload_len"] = paylen
    out["payload_cap"] = cap
    out["payload_head"] = _payload_heads(rows, cap, width)
    transport = first & (l4 != L4_FRAG_TAIL)
    out["layers"] = ip * 0x01 + transport * 0x02 + err * 0x04 + inner_ports * 0x08
    out["status"] = np.where(ip, 0, 1)  # Status.OK, Status.NOT_IP
    return out
