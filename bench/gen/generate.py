"""Generate a capture and its labels: plant, sort by time, write in chunks.

Theory of operation: planting fills one table of packet specifications;
after a stable sort by timestamp (ties keep planting order, so a seed always
gives the same file) the table is turned into frames and records chunk by
chunk, so memory holds the table plus one chunk of frames. Timestamps are
truncated to the file's resolution first, and the labels are computed from
the truncated rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from bench.gen.addrs import DarkSpace
from bench.gen.capfile import CaptureWriter
from bench.gen.labels import BACKSCATTER_RULE, SCAN_MIN_DSTS, entity_figures, summary_counts
from bench.gen.planted import LINKS, Planter
from bench.gen.scenario import SCENARIOS, plant
from bench.gen.wire import SPEC_DTYPE, build_frame_groups, take_rows

__all__ = ["DEFAULT_DARKNET", "DEFAULT_START", "LABELS_SCHEMA", "GenOptions", "Generated", "generate"]

#: RFC 2544 benchmarking space (198.18.0.0/15, its lower /16) and RFC 5180's IPv6 benchmarking /48
DEFAULT_DARKNET = "198.18.0.0/16,2001:2::/48"
#: 2026-01-01T00:00:00Z: a fixed default so a seed alone fixes the file
DEFAULT_START = 1_767_225_600
LABELS_SCHEMA = "darknet-iodef-bench-labels/1"
CHUNK = 65_536


@dataclass(frozen=True, slots=True)
class GenOptions:
    scenario: str = "small"
    packets: int | None = None
    darknet: str = DEFAULT_DARKNET
    fmt: str = "pcap"
    ts_resolution: str = "us"
    seed: int = 1
    duration_s: float | None = None
    start: float = DEFAULT_START
    #: pcapng: one interface per ingress link (EPB interface id = link index)
    interface_per_link: bool = False
    #: bytes kept per frame (0: whole frames)
    snaplen: int = 0
    #: byte order of the file's headers (of the first section for pcapng)
    byte_order: str = "little"
    #: pcapng: split the packets into this many sections, byte orders alternating
    sections: int = 1


@dataclass(frozen=True, slots=True)
class Generated:
    labels: dict[str, Any]
    #: entity index of each packet, in file order (index into labels["entities"])
    packet_entity: npt.NDArray[np.uint32]
    bytes_written: int
    seconds: float


def plan(opts: GenOptions) -> tuple[npt.NDArray[np.void], list[dict[str, Any]], DarkSpace, int]:
    """The time-sorted packet table and the entity list (no I/O)."""
    if opts.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {opts.scenario!r} (choose from {', '.join(SCENARIOS)})")
    sc = SCENARIOS[opts.scenario]
    dark = DarkSpace.parse(opts.darknet)
    duration = opts.duration_s if opts.duration_s is not None else sc.duration_s
    if duration < 10:
        raise ValueError(f"--duration must be at least 10 s ({duration} given)")
    total = opts.packets if opts.packets is not None else sc.packets
    planter = Planter(dark, int(opts.start * 1e9), int(duration * 1e9), opts.seed)
    plant(planter, sc, total)
    rows = np.concatenate(planter.blocks) if planter.blocks else np.zeros(0, dtype=SPEC_DTYPE)
    if opts.ts_resolution == "us":
        rows["ts_ns"] -= rows["ts_ns"] % 1000
    rows = take_rows(rows, np.argsort(rows["ts_ns"], kind="stable"))
    return rows, planter.entities, dark, total


def generate(opts: GenOptions, out: BinaryIO) -> Generated:
    """Write the capture to ``out``; return its labels."""
    t0 = time.perf_counter()
    rows, entities, dark, _ = plan(opts)
    ifaces = tuple(lk.name for lk in LINKS) if opts.interface_per_link else ()
    if opts.sections < 1 or (opts.sections > 1 and opts.fmt != "pcapng"):
        raise ValueError("several sections need the pcapng format (and --sections is at least 1)")
    writer = CaptureWriter(out, opts.fmt, opts.ts_resolution, ifaces, opts.snaplen, opts.byte_order)
    orders = [opts.byte_order, "big" if opts.byte_order == "little" else "little"]
    cuts = [len(rows) * k // opts.sections for k in range(opts.sections + 1)]
    spans = []
    for k in range(opts.sections):
        spans += [(i, min(i + CHUNK, cuts[k + 1]), k) for i in range(cuts[k], cuts[k + 1], CHUNK)]
    for i, j, k in spans:
        if k and i == cuts[k]:
            writer.new_section(orders[k % 2])
        chunk = rows[i:j]
        lengths, groups = build_frame_groups(chunk)
        writer.write(chunk["ts_ns"], lengths, groups, chunk["link"])
    labels = {
        "schema": LABELS_SCHEMA,
        "generator": "python -m bench.gen_darknet",
        # the byte-identical output per seed holds for one numpy version (its Generator streams)
        "numpy": np.__version__,
        "scenario": opts.scenario,
        "seed": opts.seed,
        "format": opts.fmt,
        "ts_resolution": opts.ts_resolution,
        "linktype": 1,
        "snaplen": opts.snaplen,
        "byte_order": opts.byte_order,
        "sections": opts.sections,
        "darknet": [str(n) for n in (*dark.v4, *dark.v6)],
        "telescope_size_v4": dark.size_v4,
        "start_ts_ns": int(opts.start * 1e9),
        "duration_s": (
            opts.duration_s if opts.duration_s is not None else SCENARIOS[opts.scenario].duration_s
        ),
        "rules": {"backscatter": BACKSCATTER_RULE, "scan_min_distinct_dsts": SCAN_MIN_DSTS},
        "links": [{"name": lk.name, "vlan": list(lk.tags), "src_mac": _mac(lk.mac)} for lk in LINKS],
        # pcapng interface names in interface-id order ([] = one unnamed interface)
        "interfaces": list(ifaces),
        "counts": summary_counts(rows, entities),
        "entities": entity_figures(rows, entities),
    }
    return Generated(labels, rows["entity"].astype(np.uint32), writer.bytes_written, time.perf_counter() - t0)


def _mac(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))
