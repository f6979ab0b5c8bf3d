"""``darknet-iodef sensor``: captures in, flow summaries out (binary flow file, JSON lines).

This is the thin I/O adapter around the sans-I/O :class:`~sensor.flows.FlowBuilder`:
it reads the captures with the parser, pushes the packet batches, and writes
every closed interval as it comes. Several captures are one stream, in the
order given on the command line (rotated capture files given in time order,
as a shell glob of ``dark-2024-05-01T*.pcap`` lists them); packets that go
back in time past a closed interval are counted as late, and the command
warns when a capture starts before the previous one ended (merge such
captures with ``mergecap`` first). The output is written to a temporary file
beside FLOWS and renamed at the end, so a failed run never leaves a
half-written flow file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.bus.flows import partition_batch
from darknet_iodef.errors import ConfigError
from darknet_iodef.flowtuple import FlowBatch, flow_rows_as_dicts, sample_rows_as_dicts, write_batch
from darknet_iodef.settings import load
from sensor.capture import CaptureStats, capture_sizes, iter_packet_batches
from sensor.flows import FlowBuilder
from sensor.flows_samples import in_sorted
from sensor.live import command as live_command
from sensor.progress import Progress
from sensor.settings import SECTION, SensorSettings

__all__ = [
    "DISTINCT_SOURCES_LIMIT",
    "FILE_BATCH_MAX_BYTES",
    "jsonl_lines",
    "register",
    "run_sensor",
    "write_file_batch",
]

log = logging.getLogger(__name__)

#: the end-of-run summary counts distinct sources exactly up to this many
DISTINCT_SOURCES_LIMIT = 1_000_000
#: an interval's batch larger than this is written as several frames of the same
#: interval, its counters on the first (readers refuse frames over 256 MB)
FILE_BATCH_MAX_BYTES = 64 * 1024 * 1024


def write_file_batch(out: BinaryIO, batch: FlowBatch) -> None:
    """Append one interval to a flow file, cut into frames that readers accept.

    A huge interval (a flood of distinct tuples) is split as on Kafka, so no
    frame exceeds ``FILE_BATCH_MAX_BYTES`` and ``read_batches`` never refuses it.
    The live sensor writes through here too.
    """
    for _, part in partition_batch(batch, 1, FILE_BATCH_MAX_BYTES):
        write_batch(out, part)

DESCRIPTION = """\
Fold captures into flow summaries: per interval of event time (default 60 s),
one record per distinct (source, destination, ports or ICMP type/code,
protocol, TTL, TCP flags, IP length, ...) with a packet count, plus the first
few packets of each source as probe samples for tool fingerprints. Only
packets to the dark prefixes are kept; the others are counted and dropped.

FLOWS is a binary flow file (docs/flows.md): length-prefixed flow batches,
one per interval, the same bytes the sensor publishes on Kafka.
--jsonl writes the same records as JSON lines for people ('-' for stdout).
Captures are read in the order given, as one stream.

Options also come from the [sensor] table of the configuration and from
DARKNET_IODEF_SENSOR_<OPTION> environment variables; flags win.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this subcommand to ``darknet-iodef``."""
    p = subparsers.add_parser(
        "sensor",
        help="fold captures into flow summaries",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", nargs="+", metavar="CAPTURE",
                     help="pcap or pcapng files (optionally gzip/bzip2/xz-compressed), read in this order")
    src.add_argument("--interface", metavar="IFACE",
                     help="capture live on IFACE until SIGTERM/SIGINT (docs/live-capture.md)")
    p.add_argument("--darknet", metavar="CIDR[,CIDR...]",
                   help="the dark prefixes, IPv4 and IPv6, e.g. 198.18.0.0/15,2001:db8::/32")
    p.add_argument("--out", metavar="FLOWS", help="binary flow file to write (or --kafka)")
    p.add_argument("--kafka", metavar="HOST:PORT[,...]",
                   help="publish the flow batches to Kafka instead of --out (docs/pipeline.md)")
    p.add_argument("--jsonl", metavar="FILE", help="also write the records as JSON lines ('-': stdout)")
    p.add_argument("--interval", metavar="SECONDS", help="interval of event time (default 60)")
    p.add_argument("--samples-per-source", metavar="K",
                   help="probe samples kept per source and interval (default 4)")
    p.add_argument("--reorder-slack", metavar="SECONDS",
                   help="how long an interval stays open for reordered packets (default 0)")
    p.add_argument("--name", metavar="SENSOR", help="the sensor's name in its records (default: host name)")
    live_command.add_arguments(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    overrides = {
        "darknet": args.darknet,
        "interval": args.interval,
        "samples_per_source": args.samples_per_source,
        "reorder_slack": args.reorder_slack,
        "name": args.name,
    }
    table = getattr(args, "config_table", None) or {}
    settings = load(SensorSettings, SECTION, table.get(SECTION), os.environ, overrides)
    if args.kafka:
        from darknet_iodef.pipeline.cli import sensor_kafka

        return sensor_kafka(args, settings)
    if not args.out:
        raise ConfigError("--out", "give a flow file to write (or --kafka HOST:PORT)")
    if args.interface:
        return live_command.run_interface(args, settings)
    summary = run_sensor(args.pcap, settings, Path(args.out), args.jsonl)
    print(summary, file=sys.stderr)
    return 0


class _Summary:
    """Run totals for the closing summary (distinct sources exact up to a limit).

    Distinct sources are kept as sorted arrays -- IPv4-mapped addresses by
    their low 8 bytes, others by both words -- and each batch's new ones are
    inserted in place, so a long capture costs a copy per interval, not a
    re-sort of everything seen.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.flows = 0
        self.samples = 0
        self._v4 = np.zeros(0, dtype=np.uint64)
        self._other = np.zeros((0, 2), dtype=np.uint64)
        self.sources_overflow = False

    def add(self, batch: FlowBatch) -> None:
        self.batches += 1
        self.flows += int(batch.flows.shape[0])
        self.samples += int(batch.samples.shape[0])
        if self.sources_overflow or batch.flows.shape[0] == 0:
            return
        # not np.unique: it is slow here (see sensor.flows.count_distinct_addresses)
        words = np.ascontiguousarray(batch.flows["src_ip"]).view(np.uint64).reshape(-1, 2)
        v4 = words[:, 0] == 0  # IPv4-mapped: the first 8 bytes are zero
        new = np.sort(words[v4, 1])
        if new.shape[0]:
            fresh = np.ones(new.shape[0], dtype=bool)
            fresh[1:] = new[1:] != new[:-1]
            new = new[fresh]
            new = new[~in_sorted(new, self._v4)]
            self._v4 = np.insert(self._v4, np.searchsorted(self._v4, new), new)
        if not v4.all():
            both = np.concatenate([self._other, words[~v4]])
            both = both[np.lexsort((both[:, 1], both[:, 0]))]
            keep = np.ones(both.shape[0], dtype=bool)
            keep[1:] = np.any(both[1:] != both[:-1], axis=1)
            self._other = both[keep]
        if self._v4.shape[0] + self._other.shape[0] > DISTINCT_SOURCES_LIMIT:
            self.sources_overflow = True
            self._v4 = np.zeros(0, dtype=np.uint64)
            self._other = np.zeros((0, 2), dtype=np.uint64)

    @property
    def sources(self) -> str:
        if self.sources_overflow:
            return f"more than {DISTINCT_SOURCES_LIMIT:,}"
        return f"{self._v4.shape[0] + self._other.shape[0]:,}"


def jsonl_lines(batch: FlowBatch) -> Iterator[str]:
    """The JSON lines form of one batch: an ``interval`` line, then its flows, then its samples."""
    head = {
        "record": "interval",
        "sensor": batch.sensor,
        "interval_start_ns": batch.interval_start_ns,
        "interval_ns": batch.interval_ns,
        "interval_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.interval_start_ns // 10**9)),
        "stats": dict(batch.stats),
    }
    yield json.dumps(head, separators=(",", ":"))
    for row in flow_rows_as_dicts(batch):
        yield json.dumps({"record": "flow", "sensor": batch.sensor, **row}, separators=(",", ":"))
    for row in sample_rows_as_dicts(batch):
        yield json.dumps(
            {"record": "sample", "sensor": batch.sensor, "interval_start_ns": batch.interval_start_ns, **row},
            separators=(",", ":"),
        )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic_output(path: Path, mode: str, option: str) -> Iterator[IO[Any]]:
    """A temporary file beside ``path``, renamed onto it only if the block succeeds."""
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        os.fchmod(fd, 0o666 & ~_umask())  # the permissions open() would have given
    except OSError as exc:
        raise ConfigError(option, f"cannot write in {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _first_ts(batch: npt.NDArray[np.void]) -> int | None:
    return int(batch["ts_ns"].min()) if batch.shape[0] else None


def run_sensor(
    captures: list[str],
    settings: SensorSettings,
    out: Path,
    jsonl: str | None = None,
    progress_enabled: bool | None = None,
) -> str:
    """Fold ``captures`` into ``out`` (and ``jsonl``); return the summary text."""
    if not settings.darknet:
        raise ConfigError("--darknet", "no dark prefixes given (flag, [sensor] darknet or "
                          "DARKNET_IODEF_SENSOR_DARKNET)")
    darknet = DarkPrefixes.parse(settings.darknet, setting="--darknet")
    name = settings.name or socket.gethostname()
    sizes = capture_sizes(captures)
    builder = FlowBuilder(darknet, settings, name)
    cstats = CaptureStats()
    summary = _Summary()
    progress = Progress(sum(sizes), label="sensor", enabled=progress_enabled)
    json_out: contextlib.AbstractContextManager[IO[Any] | None]
    if jsonl is None:
        json_out = contextlib.nullcontext(None)
    elif jsonl == "-":
        json_out = contextlib.nullcontext(sys.stdout)
    else:
        json_out = _atomic_output(Path(jsonl), "w", "--jsonl")
    with _atomic_output(out, "wb", "--out") as flows_fh, json_out as json_fh:

        def emit(batches: list[FlowBatch]) -> None:
            for fb in batches:
                write_file_batch(cast(BinaryIO, flows_fh), fb)
                summary.add(fb)
                if json_fh is not None:
                    json_fh.write("\n".join(jsonl_lines(fb)) + "\n")

        try:
            for path in captures:
                first = True
                for batch in iter_packet_batches(path, stats=cstats, progress=progress):
                    if first:
                        first = False
                        start, wm = _first_ts(batch), builder.watermark_ns
                        if start is not None and wm is not None and start + settings.reorder_slack_ns < wm:
                            log.warning("%s starts %.3f s before the end of the previous capture; "
                                        "its packets for closed intervals are counted as late "
                                        "(merge overlapping captures with mergecap first)",
                                        path, (wm - start) / 1e9)
                    emit(builder.push(batch))
            emit(builder.flush())
        finally:
            progress.close()
    for line in cstats.warnings:
        log.warning("%s", line)
    return _summary_text(builder.stats, summary, cstats.records, len(captures), out)


def _summary_text(st: dict[str, int], summary: _Summary, records: int, files: int, out: Path) -> str:
    dropped = {k.removesuffix("_packets"): v for k, v in st.items()
               if k.endswith("_packets") and v and k not in
               ("packets", "dark_packets", "malformed_packets")}
    reasons = ", ".join(f"{k} {v:,}" for k, v in dropped.items()) or "none"
    return "\n".join((
        f"sensor: {files} capture(s), {records:,} packets, {st['dark_packets']:,} to the darknet",
        f"sensor: dropped: {reasons}",
        f"sensor: {summary.flows:,} flows, {summary.sources} distinct sources, {summary.samples:,} samples "
        f"in {summary.batches:,} interval(s) -> {out}",
    ))
