"""Write darknet-like traffic with planted scanners, backscatter and spoofed floods.

Usage (from the repository root)::

    python -m bench.gen_darknet --scenario sample --seed 1 \\
        --out pcaps/sample-darknet.pcap --labels pcaps/sample-darknet.labels.json

The labels JSON says exactly what was planted (schema in bench/README.md);
``--packet-labels`` also saves each packet's entity index (numpy ``.npy``).
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import json
import lzma
import os
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bench.gen.generate import DEFAULT_DARKNET, DEFAULT_START, GenOptions, generate
from bench.gen.scenario import SCENARIOS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.gen_darknet",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios:\n" + "\n".join(f"  {s.name:7} {s.doc}" for s in SCENARIOS.values()),
    )
    p.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="small",
        help="which cast of planted entities, and default size and duration (default: small)",
    )
    p.add_argument(
        "--packets",
        type=int,
        help="total packets (default: the scenario's); the rest of "
        "the planted cast is filled with bulk scanners and background radiation",
    )
    p.add_argument(
        "--darknet",
        default=DEFAULT_DARKNET,
        help=f"dark prefixes, comma-separated; IPv6 parts are planted only with an IPv6 prefix "
        f"(default: {DEFAULT_DARKNET})",
    )
    p.add_argument("--format", dest="fmt", choices=["pcap", "pcapng"], default="pcap")
    p.add_argument(
        "--ts-resolution",
        choices=["us", "ns"],
        default="us",
        help="timestamp resolution: pcap magic a1b2c3d4 / a1b23c4d, pcapng if_tsresol 6 / 9",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, help="seconds of event time (default: the scenario's)")
    p.add_argument(
        "--start",
        type=float,
        default=DEFAULT_START,
        help=f"first timestamp, seconds since the epoch (default: {DEFAULT_START})",
    )
    p.add_argument(
        "--interface-per-link",
        action="store_true",
        help="pcapng: one interface (IDB with if_name) per ingress link; each frame on its link's interface",
    )
    p.add_argument(
        "--snaplen",
        type=int,
        default=0,
        help="keep at most this many bytes of each frame, as header-only telescope captures do "
        "(default 0: whole frames)",
    )
    p.add_argument(
        "--compress",
        choices=["none", "gzip", "bzip2", "xz"],
        default="none",
        help="compress the capture file (the name is used as given)",
    )
    p.add_argument(
        "--byte-order",
        choices=["little", "big"],
        default="little",
        help="byte order of the file's headers (pcapng: of its first section)",
    )
    p.add_argument(
        "--sections",
        type=int,
        default=1,
        help="pcapng: split the packets into this many sections, byte orders alternating",
    )
    p.add_argument("--out", required=True, type=Path, help="capture file to write")
    p.add_argument("--labels", type=Path, help="labels JSON to write")
    p.add_argument("--packet-labels", type=Path, help="per-packet entity index to write (.npy, file order)")
    return p


def _compressed(raw: BinaryIO, how: str) -> BinaryIO:
    """A writer that compresses into ``raw`` (deterministic: gzip without a time stamp)."""
    if how == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)  # type: ignore[return-value]
    if how == "bzip2":
        return bz2.BZ2File(raw, "wb")  # type: ignore[return-value]
    if how == "xz":
        return lzma.LZMAFile(raw, "wb")  # type: ignore[return-value]
    return contextlib.nullcontext(raw)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    opts = GenOptions(
        scenario=args.scenario,
        packets=args.packets,
        darknet=args.darknet,
        fmt=args.fmt,
        ts_resolution=args.ts_resolution,
        seed=args.seed,
        duration_s=args.duration,
        start=args.start,
        interface_per_link=args.interface_per_link,
        snaplen=args.snaplen,
        byte_order=args.byte_order,
        sections=args.sections,
    )
    # write beside the target and rename: a failed run leaves no half-written capture
    part = args.out.with_name(args.out.name + ".part")
    try:
        with part.open("wb") as raw, _compressed(raw, args.compress) as fh:
            result = generate(opts, fh)
    except ValueError as exc:
        part.unlink(missing_ok=True)
        print(f"gen_darknet: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, args.out)
    if args.labels:
        args.labels.write_text(json.dumps(result.labels, indent=1) + "\n")
    if args.packet_labels:
        with args.packet_labels.open("wb") as fh:
            np.save(fh, result.packet_entity)
    c = result.labels["counts"]
    print(
        f"wrote {args.out}: {c['packets']} packets, {result.bytes_written / 1e6:.1f} MB, "
        f"{c['entities']} entities ({c['scanners']} scanners, {c['victim_vectors']} backscatter vectors) "
        f"in {result.seconds:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
