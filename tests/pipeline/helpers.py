"""Helpers of the pipeline tests: split a capture between two sensors, compare output trees."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

__all__ = ["SAMPLE_DARKNET", "document_files", "events_without_spoofing", "run_sample", "split_by_source"]

SAMPLE_DARKNET = "198.18.0.0/16,2001:2::/48"


def run_sample(repo_root: Path, out: Path, *extra: str) -> int:
    """``darknet-iodef run`` on the committed sample capture (in process); its exit status."""
    from darknet_iodef.cli import main

    capture = str(repo_root / "pcaps/sample-darknet.pcap")
    return main(["run", capture, "--darknet", SAMPLE_DARKNET, *extra, "--out", str(out)])


def _source(frame: bytes) -> bytes:
    """The IP source address of an Ethernet frame (after VLAN tags), or b'' for anything else."""
    off = 12
    ethertype = struct.unpack_from(">H", frame, off)[0] if len(frame) >= 14 else 0
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 6:
        off += 4
        ethertype = struct.unpack_from(">H", frame, off)[0]
    ip = off + 2
    if ethertype == 0x0800 and len(frame) >= ip + 20:
        return frame[ip + 12 : ip + 16]
    if ethertype == 0x86DD and len(frame) >= ip + 40:
        return frame[ip + 8 : ip + 24]
    return b""


def split_by_source(capture: Path, out_a: Path, out_b: Path) -> tuple[int, int]:
    """Write the packets of ``capture`` (classic pcap, Ethernet) to two captures by source address.

    Every source's packets go to one of the two, as two sensors on two links
    of one telescope would see them; record bytes are copied unchanged.
    """
    data = capture.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    header, pos = data[:24], 24
    outs = [bytearray(header), bytearray(header)]
    counts = [0, 0]
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        record = data[pos : pos + 16 + incl]
        src = _source(record[16:])
        which = zlib.crc32(src) & 1 if src else 0
        outs[which] += record
        counts[which] += 1
        pos += 16 + incl
    out_a.write_bytes(bytes(outs[0]))
    out_b.write_bytes(bytes(outs[1]))
    return counts[0], counts[1]


def events_without_spoofing(path: Path) -> list[str]:
    """Event lines other than spoofing summaries, sorted (they are per flows partition in Kafka mode)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return sorted(line for line in lines if json.loads(line)["classification.type"] != "masquerade")


def document_files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path, except the operator's not-reported list."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "not-reported.jsonl"
    }


def split_by_time(capture: Path, boundary_s: int, before: Path, after: Path) -> tuple[int, int]:
    """Write the records of ``capture`` before and from ``boundary_s`` (epoch seconds) to two files."""
    data = capture.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    outs = [bytearray(data[:24]), bytearray(data[:24])]
    counts = [0, 0]
    pos = 24
    while pos + 16 <= len(data):
        ts, _frac, incl = struct.unpack_from(endian + "III", data, pos)
        which = 0 if ts < boundary_s else 1
        outs[which] += data[pos : pos + 16 + incl]
        counts[which] += 1
        pos += 16 + incl
    before.write_bytes(bytes(outs[0]))
    after.write_bytes(bytes(outs[1]))
    return counts[0], counts[1]
