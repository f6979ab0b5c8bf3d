"""Differential test: every decoded field equals what tshark reports, packet by packet.

tshark runs once per capture in ../shared/pcaps with ``-T fields`` and
``-E occurrence=a`` (all occurrences, comma-separated): the first occurrence
of a field is the outer packet; an ICMP error's quoted header shows up as the
second ``ip.*``/``ipv6.*`` occurrence, and its ports as the only ``tcp``/``udp``
ones. ``-o ip.defragment:FALSE`` / ``ipv6.defragment:FALSE`` keep tshark from
reassembling fragments, ``tcp.seq_raw``/``tcp.ack_raw`` give absolute numbers.

Where the two differ by design, the comparison maps it (and says why):
- ``ip.frag_offset`` / ``ipv6.fraghdr.offset`` print the raw 13-bit field (units
  of 8 bytes); ``frag_offset`` is in bytes (sensor/fields.py), so tshark x 8.
- Simple Packet Blocks carry no timestamp: tshark prints none, the parser
  gives the previous packet's time (so event-time windows stay ordered); the
  timestamp is not compared for them.
- tshark 4.0 lists pcapng custom blocks as frames of protocol "data" with
  no time; they hold no packet and are left out.
- tshark shows the payload of a TCP RST only as text (``tcp.reset_cause``, RFC
  9293 section 3.5.3 lets a RST carry diagnostic text); its characters are
  taken as the payload bytes (exact for the printable ASCII the captures hold).
- tshark decodes tunnels (IP in IP, GRE) and application layers; the parser
  stops at the first transport, so transport fields are compared only when
  the outer protocol is TCP, UDP, ICMP or ICMPv6.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sensor.capture import CaptureStats, iter_packet_batches
from sensor.fields import LAYER_INNER, LAYER_TRANSPORT, PACKET_DTYPE, PAYLOAD_HEAD

pytestmark = pytest.mark.shared

FIELDS = [
    "frame.protocols", "frame.interface_id", "frame.time_epoch", "frame.cap_len", "frame.len",
    "vlan.id", "eth.src", "sll.src.eth", "sll.hatype",
    "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.id", "ip.len", "ip.frag_offset",
    "ip.flags.rb", "ip.flags.df", "ip.flags.mf",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.hlim", "ipv6.plen",
    "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident", "ipv6.fraghdr.nxt",
    "ipv6.hopopts.nxt", "ipv6.routing.nxt", "ipv6.dstopts.nxt",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
    "tcp.hdr_len", "tcp.options.mss_val", "tcp.option_kind",
    "tcp.len", "tcp.payload", "tcp.reset_cause", "udp.srcport", "udp.dstport", "udp.length", "udp.payload",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
]
EXT_NXT = {0: "ipv6.hopopts.nxt", 43: "ipv6.routing.nxt", 44: "ipv6.fraghdr.nxt", 60: "ipv6.dstopts.nxt"}
ICMP4_ERRORS = {3, 4, 5, 11, 12}
ICMP6_ERRORS = {1, 2, 3, 4}

#: captures tshark cannot read at all (their outcome is asserted in test_capture_errors.py)
NOT_DECODED = {"fmt_empty_header_only.pcap"}


def _captures() -> list[str]:
    from tests.conftest import SHARED

    d = SHARED / "pcaps"
    if not d.exists():
        return ["(no ../shared/pcaps)"]
    return sorted(p.name for p in d.iterdir()
                  if p.suffix in (".pcap", ".pcapng") and p.name not in NOT_DECODED)


def _tshark_rows(tshark: str, path: Path) -> list[dict[str, list[str]]]:
    cmd = [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=/t"]
    for f in FIELDS:
        cmd += ["-e", f]
    # a capture cut short makes tshark exit non-zero after printing every whole packet
    text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    rows = []
    for line in text.splitlines():
        cols = line.split("\t")
        row = {f: (c.split(",") if c else []) for f, c in zip(FIELDS, cols, strict=True)}
        if row["frame.protocols"] == ["data"] and not row["frame.time_epoch"]:
            continue  # tshark 4.0 lists pcapng custom blocks as frames; they hold no packet
        rows.append(row)
    return rows


def _num(v: str) -> int:
    if v in ("True", "False"):
        return int(v == "True")
    return int(v, 0)


def _first(r: dict[str, list[str]], f: str, k: int = 0) -> int:
    vals = r[f]
    return _num(vals[k]) if len(vals) > k else 0


def _ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _v6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _expected(r: dict[str, list[str]]) -> dict[str, object]:
    """tshark's view of one packet in the parser's field names (absent = 0)."""
    e: dict[str, object] = {
        "cap_len": _first(r, "frame.cap_len"),
        "wire_len": _first(r, "frame.len"),
        "vlan": _first(r, "vlan.id"),
        "iface": _first(r, "frame.interface_id"),
    }
    if r["frame.time_epoch"]:
        e["ts_ns"] = _ns(r["frame.time_epoch"][0])
    if r["eth.src"]:
        e["src_mac"] = _mac(r["eth.src"][0])
    elif r["sll.src.eth"] and _first(r, "sll.hatype") == 1:
        e["src_mac"] = _mac(r["sll.src.eth"][0])
    else:
        e["src_mac"] = 0
    proto = -1
    if r["ip.src"]:
        proto = _first(r, "ip.proto")
        e.update(ip_version=4, src_ip4=_v4(r["ip.src"][0]), dst_ip4=_v4(r["ip.dst"][0]), protocol=proto,
                 ttl=_first(r, "ip.ttl"), ip_id=_first(r, "ip.id"), ip_len=_first(r, "ip.len"),
                 frag_offset=_first(r, "ip.frag_offset") * 8,
                 frag_flags=_first(r, "ip.flags.rb") << 2 | _first(r, "ip.flags.df") << 1
                 | _first(r, "ip.flags.mf"))
    elif r["ipv6.src"]:
        proto = _first(r, "ipv6.nxt")
        for _ in range(8):  # follow the extension-header chain to the transport
            if proto in EXT_NXT and r[EXT_NXT[proto]]:
                proto = _first(r, EXT_NXT[proto])
        e.update(ip_version=6, src_ip6=_v6(r["ipv6.src"][0]), dst_ip6=_v6(r["ipv6.dst"][0]), protocol=proto,
                 ttl=_first(r, "ipv6.hlim"), ip_len=_first(r, "ipv6.plen") + 40,
                 frag_offset=_first(r, "ipv6.fraghdr.offset") * 8, frag_flags=_first(r, "ipv6.fraghdr.more"),
                 ip_id=_first(r, "ipv6.fraghdr.ident"))
    else:
        e.update(ip_version=0, protocol=0)
    first_frag = e.get("frag_offset", 0) == 0
    zero_transport: dict[str, object] = {
        k: 0 for k in ("src_port", "dst_port", "tcp_seq", "tcp_ack", "tcp_flags", "tcp_window",
                       "tcp_hdr_len", "tcp_mss", "tcp_opt_kinds", "icmp_type", "icmp_code",
                       "inner_ip_version", "inner_protocol", "payload_len", "payload_cap")}
    zero_transport["payload_head"] = bytes(PAYLOAD_HEAD)
    if proto not in (6, 17, 1, 58) or not first_frag:
        e.update(zero_transport)
        return e
    if proto == 6:
        kinds = 0
        for i, k in enumerate(int(x) for x in r["tcp.option_kind"][:8]):
            if k == 0:
                break
            kinds |= k << (8 * i)
        e.update(src_port=_first(r, "tcp.srcport"), dst_port=_first(r, "tcp.dstport"),
                 tcp_seq=_first(r, "tcp.seq_raw"), tcp_ack=_first(r, "tcp.ack_raw"),
                 tcp_flags=_first(r, "tcp.flags"), tcp_window=_first(r, "tcp.window_size_value"),
                 tcp_hdr_len=_first(r, "tcp.hdr_len"), tcp_mss=_first(r, "tcp.options.mss_val"),
                 tcp_opt_kinds=kinds)
        payload = r["tcp.payload"]
        if r["tcp.reset_cause"]:  # a RST's payload is shown as this text only (commas split it)
            payload = [",".join(r["tcp.reset_cause"]).encode("latin-1").hex()]
        e.update(_payload(_first(r, "tcp.len"), payload))
    elif proto == 17:
        e.update(src_port=_first(r, "udp.srcport"), dst_port=_first(r, "udp.dstport"))
        e.update(_payload(max(_first(r, "udp.length") - 8, 0), r["udp.payload"]))
    else:
        v6 = proto == 58
        typ = _first(r, "icmpv6.type" if v6 else "icmp.type")
        e.update(icmp_type=typ, icmp_code=_first(r, "icmpv6.code" if v6 else "icmp.code"))
        quoted = len(r["ipv6.src" if v6 else "ip.src"]) > 1
        if typ in (ICMP6_ERRORS if v6 else ICMP4_ERRORS) and quoted:
            inner = _first(r, "ipv6.nxt" if v6 else "ip.proto", 1)
            e.update(inner_ip_version=6 if v6 else 4, inner_protocol=inner)
            if v6:
                e.update(inner_src_ip6=_v6(r["ipv6.src"][1]), inner_dst_ip6=_v6(r["ipv6.dst"][1]))
            else:
                e.update(inner_src_ip4=_v4(r["ip.src"][1]), inner_dst_ip4=_v4(r["ip.dst"][1]))
            layer = "tcp" if inner == 6 else "udp" if inner == 17 else ""
            if layer and r[f"{layer}.srcport"]:
                e.update(inner_src_port=_first(r, f"{layer}.srcport"),
                         inner_dst_port=_first(r, f"{layer}.dstport"))
    return e


def _payload(length: int, data: list[str]) -> dict[str, object]:
    """payload_len/cap/head from tshark's declared length and the payload bytes it shows
    (as far as they were captured: tshark shows no payload field when none was)."""
    head = bytes.fromhex(data[0])[:PAYLOAD_HEAD] if data else b""
    return {"payload_len": length, "payload_cap": len(head),
            "payload_head": head + bytes(PAYLOAD_HEAD - len(head))}


def _actual(row: np.void, name: str) -> object:
    v = row[name]
    if PACKET_DTYPE[name].kind == "V":
        return bytes(v)
    return int(v)


@pytest.mark.parametrize("name", _captures())
def test_fields_equal_tshark(name: str, shared_pcaps: Path, tshark: str) -> None:
    path = shared_pcaps / name
    expected = _tshark_rows(tshark, path)
    stats = CaptureStats()
    got = np.concatenate(list(iter_packet_batches(path, stats=stats)) or [np.zeros(0, PACKET_DTYPE)])
    assert got.size == len(expected), f"{name}: {got.size} packets, tshark shows {len(expected)}"
    assert got.size > 0
    mismatches = []
    for i, (row, r) in enumerate(zip(got, expected, strict=True)):
        for field, want in _expected(r).items():
            have = _actual(row, field)
            if have != want:
                mismatches.append(f"frame {i + 1} {field}: parser {have!r}, tshark {want!r}")
    assert not mismatches, f"{name}: {len(mismatches)} mismatches, first: " + "; ".join(mismatches[:8])


def test_diff_covers_every_layer(shared_pcaps: Path) -> None:
    """The captures above exercise what the comparison claims to cover."""
    seen = {"ip6": 0, "vlan": 0, "frag": 0, "inner": 0, "mss": 0, "icmp6": 0, "tcp_payload": 0,
            "udp_payload": 0, "ip6_payload": 0, "payload_cut": 0, "long_payload": 0}
    for name in _captures():
        for b in iter_packet_batches(shared_pcaps / name):
            seen["ip6"] += int((b["ip_version"] == 6).sum())
            seen["vlan"] += int((b["vlan"] > 0).sum())
            seen["frag"] += int((b["frag_offset"] > 0).sum())
            seen["inner"] += int((b["layers"] & LAYER_INNER > 0).sum())
            seen["mss"] += int((b["tcp_mss"] > 0).sum())
            seen["icmp6"] += int(((b["protocol"] == 58) & (b["layers"] & LAYER_TRANSPORT > 0)).sum())
            cap = b["payload_cap"]
            seen["tcp_payload"] += int(((b["protocol"] == 6) & (cap > 0)).sum())
            seen["udp_payload"] += int(((b["protocol"] == 17) & (cap > 0)).sum())
            seen["ip6_payload"] += int(((b["ip_version"] == 6) & (cap > 0)).sum())
            seen["payload_cut"] += int((cap < np.minimum(b["payload_len"], PAYLOAD_HEAD)).sum())
            seen["long_payload"] += int((cap == PAYLOAD_HEAD).sum())
    assert all(v > 0 for v in seen.values()), seen
