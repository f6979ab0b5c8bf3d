"""``darknet-iodef packets``: dump the per-packet header fields of captures.

CSV (a header line of ``PACKET_DTYPE`` field names, addresses as text),
JSON lines (the same names and values, one object per packet) or npz (the
raw structured array under the key ``packets``). docs/packets.md documents
every column. An unreadable capture prints one line naming file, offset and
reason, the other captures are still dumped, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import sys
from collections.abc import Iterator
from typing import IO

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import CaptureError
from sensor.capture import CaptureStats, iter_packet_batches
from sensor.fields import PACKET_DTYPE, PAYLOAD_HEAD
from sensor.progress import Progress

__all__ = ["COLUMNS", "format_rows", "register", "run"]

log = logging.getLogger("darknet_iodef.sensor.packets")

#: output columns: every PACKET_DTYPE field but padding (names starting with "_")
COLUMNS: tuple[str, ...] = tuple(n for n in PACKET_DTYPE.names or () if not n.startswith("_"))
_TEXT = {"src_mac", "src_ip4", "dst_ip4", "src_ip6", "dst_ip6", "inner_src_ip4", "inner_dst_ip4",
         "inner_src_ip6", "inner_dst_ip6", "tcp_opt_kinds", "payload_head"}


def _ip4_text(v: npt.NDArray[np.uint32], present: npt.NDArray[np.bool_]) -> npt.NDArray[np.str_]:
    out = np.full(v.size, "", dtype=object)
    if present.any():
        q = v[present].astype(">u4").view(np.uint8).reshape(-1, 4).astype("U3")
        dot = np.strings.add
        text = dot(dot(dot(dot(dot(dot(q[:, 0], "."), q[:, 1]), "."), q[:, 2]), "."), q[:, 3])
        out[present] = text.astype(object)
    return out


def _ip6_text(v: npt.NDArray[np.void], present: npt.NDArray[np.bool_]) -> npt.NDArray[np.str_]:
    out = np.full(v.size, "", dtype=object)
    if present.any():
        uniq, inv = np.unique(v[present], return_inverse=True)
        texts = np.array([str(ipaddress.IPv6Address(bytes(u))) for u in uniq], dtype=object)
        out[present] = texts[inv]
    return out


def _mac_text(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.str_]:
    out = np.full(v.size, "", dtype=object)
    present = v != 0
    if present.any():
        uniq, inv = np.unique(v[present], return_inverse=True)
        texts = np.array([":".join(f"{int(u):012x}"[i:i + 2] for i in range(0, 12, 2)) for u in uniq],
                         dtype=object)
        out[present] = texts[inv]
    return out


def _kinds_text(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.str_]:
    """Packed option kinds -> ``"2-1-3-1-1-4"`` (kinds in option order)."""
    out = np.full(v.size, "", dtype=object)
    present = v != 0
    if present.any():
        uniq, inv = np.unique(v[present], return_inverse=True)
        texts = np.array(["-".join(str(b) for b in int(u).to_bytes(8, "little") if b)
                          for u in uniq], dtype=object)
        out[present] = texts[inv]
    return out


def _head_text(v: npt.NDArray[np.void], cap: npt.NDArray[np.uint8]) -> npt.NDArray[np.str_]:
    """Payload heads as lowercase hex of their real bytes only (``payload_cap`` of them)."""
    out = np.full(v.size, "", dtype=object)
    rows = np.flatnonzero(cap)
    if rows.size:
        raw = np.ascontiguousarray(v[rows]).tobytes()
        out[rows] = [raw[i * PAYLOAD_HEAD:i * PAYLOAD_HEAD + c].hex()
                     for i, c in enumerate(cap[rows].tolist())]
    return out


def _column(batch: npt.NDArray[np.void], name: str) -> npt.NDArray[np.str_]:
    v = batch[name]
    ver = batch["ip_version"]
    inner = batch["inner_ip_version"]
    if name in ("src_ip4", "dst_ip4"):
        return _ip4_text(v, ver == 4)
    if name in ("inner_src_ip4", "inner_dst_ip4"):
        return _ip4_text(v, inner == 4)
    if name in ("src_ip6", "dst_ip6"):
        return _ip6_text(v, ver == 6)
    if name in ("inner_src_ip6", "inner_dst_ip6"):
        return _ip6_text(v, inner == 6)
    if name == "src_mac":
        return _mac_text(v)
    if name == "tcp_opt_kinds":
        return _kinds_text(v)
    if name == "payload_head":
        return _head_text(v, batch["payload_cap"])
    return v.astype(str).astype(object)


def format_rows(batch: npt.NDArray[np.void], fmt: str) -> str:
    """CSV lines or JSON lines (no header) for one batch, each line ending in a newline."""
    if not batch.size:
        return ""
    cols: list[list[object]] = []
    for name in COLUMNS:
        if name in _TEXT:
            texts = _column(batch, name).tolist()
            if fmt == "jsonl":
                # texts hold only [0-9a-f.:-]: quoting needs no escaping; absent -> null
                texts = [f'"{t}"' if t else "null" for t in texts]
            cols.append(texts)
        else:
            cols.append(batch[name].tolist())
    if fmt == "jsonl":
        line = "{" + ",".join(f'"{n}":%s' for n in COLUMNS) + "}\n"
    else:
        line = ",".join("%s" for _ in COLUMNS) + "\n"
    return "".join([line % row for row in zip(*cols, strict=True)])


def _packets(paths: list[str], stats: CaptureStats, count: int | None,
             progress: Progress, failed: list[str]) -> Iterator[npt.NDArray[np.void]]:
    left = count
    for path in paths:
        if left is not None and left <= 0:
            return
        try:
            for batch in iter_packet_batches(path, stats=stats, progress=progress):
                if left is not None:
                    batch = batch[:left]
                    left -= batch.size
                yield batch
                if left is not None and left <= 0:
                    return
        except CaptureError as exc:
            print(f"darknet-iodef: {exc.line()}", file=sys.stderr)
            failed.append(exc.line())


def run(args: argparse.Namespace) -> int:
    paths: list[str] = args.captures
    fmt: str = args.format
    total = 0
    for p in paths:
        with contextlib.suppress(OSError):
            total += os.path.getsize(p)
    progress = Progress(total, label="packets")
    stats = CaptureStats()
    failed: list[str] = []
    written = [0]
    out: IO[str] | IO[bytes]
    if fmt == "npz":
        batches = list(_packets(paths, stats, args.count, progress, failed))
        arr = np.concatenate(batches) if batches else np.zeros(0, dtype=PACKET_DTYPE)
        written[0] = arr.size
        if args.out:
            np.savez(args.out, packets=arr)
        elif sys.stdout.isatty():
            print("darknet-iodef: npz is binary: give --out FILE or redirect the output", file=sys.stderr)
            return 2
        else:
            np.savez(sys.stdout.buffer, packets=arr)
    else:
        out = open(args.out, "w", encoding="ascii", newline="") if args.out else sys.stdout  # noqa: SIM115
        try:
            if fmt == "csv":
                out.write(",".join(COLUMNS) + "\n")
            for batch in _packets(paths, stats, args.count, progress, failed):
                out.write(format_rows(batch, fmt))
                written[0] += batch.size
        finally:
            if args.out:
                out.close()
            else:
                out.flush()
    progress.close()
    for line in stats.warnings:
        print(f"darknet-iodef: warning: {line}", file=sys.stderr)
    log.info("Wrote %d packets; read %s.", written[0], stats.summary())
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this subcommand to ``darknet-iodef``."""
    p = subparsers.add_parser(
        "packets",
        help="dump per-packet header fields of captures (CSV, JSON lines, npz)",
        description="Decode pcap/pcapng captures (also .gz, .bz2, .xz; the format is read from the "
                    "file's magic number) and write one record per packet: time, interface, "
                    "addresses, ports, TTL, IP ID, TCP flags/sequence/window/options, ICMP type "
                    "and the header quoted by ICMP errors. Columns are documented in docs/packets.md.",
    )
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture files, read in order")
    p.add_argument("--format", choices=("csv", "jsonl", "npz"), default="csv",
                   help="csv (default; a header line names the columns), jsonl (one JSON object per "
                        "packet), or npz (the numpy structured array under the key 'packets')")
    p.add_argument("--count", type=int, default=None, metavar="N", help="stop after N packets")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(func=run)
