"""Builders for small synthetic captures (pcap, pcapng) and frames, made in the tests."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

Frame = tuple[int, bytes] | tuple[int, bytes, int]  # (ts_ns, frame[, wire_len])


def pcap_bytes(frames: Sequence[Frame], linktype: int = 1, *, nanosecond: bool = False,
               big_endian: bool = False, snaplen: int = 65535) -> bytes:
    """A classic pcap file holding ``frames``."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for fr in frames:
        ts, data = fr[0], fr[1]
        wire = fr[2] if len(fr) > 2 else len(data)  # type: ignore[misc]
        frac = ts % 1_000_000_000 if nanosecond else ts % 1_000_000_000 // 1000
        out.append(struct.pack(e + "IIII", ts // 1_000_000_000, frac, len(data), wire) + data)
    return b"".join(out)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _options(e: str, opts: Sequence[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack(e + "HH", c, len(v)) + v + b"\0" * (-len(v) % 4) for c, v in opts)
    return out + struct.pack(e + "HH", 0, 0)


def shb(big_endian: bool = False) -> bytes:
    e = ">" if big_endian else "<"
    return _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int, big_endian: bool = False, tsresol: int | None = None, snaplen: int = 0,
        tsoffset: int | None = None) -> bytes:
    e = ">" if big_endian else "<"
    opts = []
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(e + "q", tsoffset)))
    return _block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + _options(e, opts))


def epb(iface: int, ticks: int, data: bytes, big_endian: bool = False, wire: int | None = None) -> bytes:
    e = ">" if big_endian else "<"
    return _block(e, 6, struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                    len(data) if wire is None else wire) + data)


def spb(data: bytes, big_endian: bool = False) -> bytes:
    e = ">" if big_endian else "<"
    return _block(e, 3, struct.pack(e + "I", len(data)) + data)


def other_block(btype: int, body: bytes, big_endian: bool = False) -> bytes:
    return _block(">" if big_endian else "<", btype, body)


def ip4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 1,
        flags_frag: int = 0, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    return struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, flags_frag,
                       ttl, proto, 0, a, b) + options + payload


def tcp(sport: int, dport: int, *, seq: int = 0, ack: int = 0, flags: int = 2, window: int = 1024,
        options: bytes = b"") -> bytes:
    off = (20 + len(options)) // 4
    return struct.pack(">HHIIHHHH", sport, dport, seq, ack, (off << 12) | flags, window, 0, 0) + options


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def eth(payload: bytes, ethertype: int = 0x0800, vlans: Sequence[tuple[int, int]] = (),
        src: bytes = b"\x02\x00\x00\x00\x00\x01") -> bytes:
    tags = b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in vlans)
    return b"\xff" * 6 + src + tags + struct.pack(">H", ethertype) + payload


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write bytes to a file under tmp_path and return its path."""

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write
