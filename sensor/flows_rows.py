"""From parsed packets (PACKET_DTYPE) to flow keys and probe samples, in bulk.

Theory of operation: this is where the flow record's field rules live, once
(DOMAIN.md sections 2-4):

- Addresses become 16 bytes, IPv4 as IPv4-mapped IPv6, so v4 and v6 share
  one key layout.
- ICMP and ICMPv6 put the type in the source-port field and the code in the
  destination-port field (Corsaro FlowTuple).
- ``tcp_flags`` is one byte, CWR..FIN (Corsaro); the NS bit is dropped.
- ``tcp_window``/``tcp_hdr_len`` are kept for pure SYNs only (SYN without
  ACK), as corsaro3 does: for a scanner they are the tool's fingerprint; for
  other segments they would only multiply the tuples.
- ``ip_flags`` = the IP MF/DF/reserved bits plus IPF_FRAGMENT when the
  fragment offset is non-zero (such a packet has no ports).
- ICMP errors (the parser's LAYER_INNER) carry the quoted packet's
  destination, protocol and destination port: the DoS victim and vector.
- ``ip_len`` saturates at 65535 (an IPv6 jumbogram does not fit the field).

Samples keep the raw probe fields instead (full 12-bit TCP flags, ports as
sent, sequence, IP ID, options) for the tool fingerprints of section 4.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from darknet_iodef.addresses import ADDR_DTYPE, addr16_from_v4
from darknet_iodef.flowtuple import FLOW_DTYPE, IPF_FRAGMENT, SAMPLE_DTYPE
from sensor.fields import (
    FRAG_DF,
    FRAG_MF,
    FRAG_RESERVED,
    LAYER_INNER,
    LAYER_INNER_PORTS,
    TCP_ACK,
    TCP_SYN,
)
from sensor.flows_bytes import copy_fields

__all__ = ["IPPROTO_ICMP", "IPPROTO_ICMPV6", "IPPROTO_TCP", "addr16", "flow_rows", "sample_rows"]

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_ICMPV6 = 58


def addr16(
    version: npt.NDArray[np.uint8], v4: npt.NDArray[np.uint32], v6: npt.NDArray[np.void]
) -> npt.NDArray[np.void]:
    """Per-row 16-byte address: IPv4-mapped where ``version`` is 4, else the IPv6 bytes."""
    is4 = version == 4
    if is4.all():
        return addr16_from_v4(v4)
    out = np.ascontiguousarray(v6).view(np.uint8).reshape(-1, 16).copy()
    if is4.any():
        out[is4] = addr16_from_v4(v4[is4]).view(np.uint8).reshape(-1, 16)
    return out.view(ADDR_DTYPE).reshape(-1)


def _quoted(pk: npt.NDArray[np.void], which: str) -> npt.NDArray[np.void]:
    has = (pk["layers"] & LAYER_INNER) != 0
    if not has.any():
        return np.zeros(pk.shape[0], ADDR_DTYPE)
    out = addr16(pk["inner_ip_version"], pk[f"inner_{which}_ip4"], pk[f"inner_{which}_ip6"])
    out[~has] = np.zeros(1, ADDR_DTYPE)[0]
    return out


def _inner_port(pk: npt.NDArray[np.void], which: str) -> npt.NDArray[np.uint16]:
    has = (pk["layers"] & LAYER_INNER_PORTS) != 0
    return np.where(has, pk[f"inner_{which}_port"], 0).astype(np.uint16)


# the second 8 bytes of src_ip/dst_ip in a flow row, as a little-endian word
_SRC_WORD = FLOW_DTYPE.fields["src_ip"][1] // 8 + 1  # type: ignore[index]
_DST_WORD = FLOW_DTYPE.fields["dst_ip"][1] // 8 + 1  # type: ignore[index]
assert FLOW_DTYPE.fields["src_ip"][1] % 8 == 0 and FLOW_DTYPE.fields["dst_ip"][1] % 8 == 0  # type: ignore[index]


def _mapped_low_word(v4: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
    """Bytes 8-15 of ``::ffff:a.b.c.d`` (00 00 ff ff a b c d) read as a little-endian uint64."""
    be = np.asarray(v4, dtype=np.uint32).byteswap().astype(np.uint64)  # a in the low byte
    return (be << np.uint64(32)) | np.uint64(0xFFFF0000)


def flow_rows(
    pk: npt.NDArray[np.void], ts_ns: npt.NDArray[np.int64], slot: npt.NDArray[np.intp]
) -> npt.NDArray[np.void]:
    """One FLOW_DTYPE row per IP packet (PACKET_DTYPE, status OK): its key, count 1,
    first = last = ``ts_ns``, and 1 in slot ``slot`` of the interval."""
    n = pk.shape[0]
    keys = np.zeros(n, dtype=FLOW_DTYPE)
    keys["packet_count"] = 1
    keys["first_ns"] = ts_ns
    keys["last_ns"] = ts_ns
    keys["slot_counts"][np.arange(n), slot] = 1
    proto = pk["protocol"]
    is_icmp = (proto == IPPROTO_ICMP) | (proto == IPPROTO_ICMPV6)
    is_tcp = proto == IPPROTO_TCP
    if n and bool(np.all(pk["ip_version"] == 4)):
        # all IPv4 (the usual telescope): write the mapped addresses as words
        words = keys.view("<u8").reshape(n, -1)
        words[:, _SRC_WORD] = _mapped_low_word(pk["src_ip4"])
        words[:, _DST_WORD] = _mapped_low_word(pk["dst_ip4"])
    else:
        keys["src_ip"] = addr16(pk["ip_version"], pk["src_ip4"], pk["src_ip6"])
        keys["dst_ip"] = addr16(pk["ip_version"], pk["dst_ip4"], pk["dst_ip6"])
    # each field is one pass over the batch: skip the ones that stay zero or
    # need no choice (no ICMP error, no ICMP, no fragment: the usual batch)
    has_inner = (pk["layers"] & LAYER_INNER) != 0
    if has_inner.any():
        keys["quoted_dst_ip"] = _quoted(pk, "dst")
        keys["quoted_protocol"] = np.where(has_inner, pk["inner_protocol"], 0)
        keys["quoted_dst_port"] = _inner_port(pk, "dst")
    keys["src_mac"] = pk["src_mac"]
    if is_icmp.any():
        keys["src_port"] = np.where(is_icmp, pk["icmp_type"], pk["src_port"])
        keys["dst_port"] = np.where(is_icmp, pk["icmp_code"], pk["dst_port"])
    else:
        keys["src_port"] = pk["src_port"]
        keys["dst_port"] = pk["dst_port"]
    keys["ip_len"] = np.minimum(pk["ip_len"], 0xFFFF)
    keys["vlan"] = pk["vlan"]
    flags = pk["tcp_flags"]
    pure_syn = is_tcp & ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
    keys["tcp_window"] = np.where(pure_syn, pk["tcp_window"], 0)
    keys["tcp_hdr_len"] = np.where(pure_syn, pk["tcp_hdr_len"], 0)
    keys["tcp_flags"] = np.where(is_tcp, flags & 0xFF, 0)
    keys["protocol"] = proto
    keys["ttl"] = pk["ttl"]
    ip_flags = pk["frag_flags"] & (FRAG_MF | FRAG_DF | FRAG_RESERVED)
    fragment = pk["frag_offset"] != 0
    if fragment.any():
        ip_flags = ip_flags | np.where(fragment, IPF_FRAGMENT, 0).astype(np.uint8)
    keys["ip_flags"] = ip_flags
    keys["ip_version"] = pk["ip_version"]
    return keys


_SAMPLE_COPIED = (
    "tcp_opt_kinds",
    "ip_id",
    "tcp_seq",
    "tcp_ack",
    "src_port",
    "dst_port",
    "tcp_window",
    "tcp_mss",
    "tcp_flags",
    "protocol",
    "ttl",
    "ip_version",
    "tcp_hdr_len",
    "icmp_type",
    "icmp_code",
    "payload_cap",
    "payload_len",
    "payload_head",
)


def sample_rows(
    pk: npt.NDArray[np.void], src_ip: npt.NDArray[np.void], ts_ns: npt.NDArray[np.int64]
) -> npt.NDArray[np.void]:
    """SAMPLE_DTYPE rows (raw probe fields) for IP packets.

    ``src_ip`` as in their flow keys, ``ts_ns`` as the builder used them.
    """
    pk = np.ascontiguousarray(pk)
    out = np.zeros(pk.shape[0], dtype=SAMPLE_DTYPE)
    copy_fields(out, pk, _SAMPLE_COPIED)
    out["ts_ns"] = ts_ns
    out["src_ip"] = src_ip
    out["dst_ip"] = addr16(pk["ip_version"], pk["dst_ip4"], pk["dst_ip6"])
    out["quoted_src_ip"] = _quoted(pk, "src")
    out["quoted_dst_ip"] = _quoted(pk, "dst")
    has_inner = (pk["layers"] & LAYER_INNER) != 0
    out["quoted_protocol"] = np.where(has_inner, pk["inner_protocol"], 0)
    out["quoted_src_port"] = _inner_port(pk, "src")
    out["quoted_dst_port"] = _inner_port(pk, "dst")
    out["ip_len"] = np.minimum(pk["ip_len"], 0xFFFF)
    return out
