"""``darknet-iodef sensor --interface IFACE``: the live half of the sensor command.

The ``sensor`` command (``sensor/sensor_cmd.py``) owns the common options
(--darknet, --out, --jsonl, --interval ...); this module adds the live ones
and runs the agent. Unlike the file path, a live sensor runs for days, so its
outputs are written as it goes -- each closed interval appended and flushed
at once -- rather than renamed into place at the end: a crash then loses at
most the open interval, and a reader sees only whole batches (a cut-off tail
is reported by the flow file reader as truncated).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.errors import ConfigError
from darknet_iodef.flowtuple import FlowBatch
from darknet_iodef.settings import load
from sensor.live.settings import LiveSettings
from sensor.settings import SensorSettings

if TYPE_CHECKING:
    from sensor.live.agent import LiveSummary

__all__ = ["SECTION", "add_arguments", "run_interface", "summary_text"]

log = logging.getLogger(__name__)

#: the TOML table and environment prefix of the live options (``DARKNET_IODEF_LIVE_*``)
SECTION = "live"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The live options (--interface itself sits with --pcap in the sensor command)."""
    g = p.add_argument_group("live capture (with --interface; also [live] in the configuration)")
    g.add_argument("--bpf", metavar="EXPR", help="tcpdump-style filter run in the kernel")
    g.add_argument("--snaplen", metavar="BYTES", help="bytes kept per frame (default: all)")
    g.add_argument("--capture-method", dest="method", choices=("auto", "ring", "libpcap"),
                   help="AF_PACKET ring, libpcap, or the ring with a libpcap fallback (default auto)")
    g.add_argument("--ring-block-size", dest="block_size", metavar="BYTES",
                   help="bytes per ring block (default 1 MiB)")
    g.add_argument("--ring-blocks", dest="block_count", metavar="N", help="blocks in the ring (default 64)")
    g.add_argument("--block-timeout", dest="block_timeout_ms", metavar="MS",
                   help="ms before the kernel hands over a partly filled block (default 100)")
    g.add_argument("--fanout-group", metavar="ID",
                   help="share the interface with other sensors of this PACKET_FANOUT group (1-65535)")
    g.add_argument("--archive", dest="archive_dir", metavar="DIR",
                   help="also keep the captured frames as rotating pcap files in DIR (evidence)")
    g.add_argument("--archive-rotate-bytes", metavar="BYTES", help="new archive file past this size")
    g.add_argument("--archive-rotate-seconds", metavar="SECONDS",
                   help="new archive file after this much event time")
    g.add_argument("--archive-keep", metavar="N", help="closed archive files to keep (default all)")
    g.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics here, e.g. 127.0.0.1:9464")


def _live_settings(args: argparse.Namespace) -> LiveSettings:
    names = ("method", "block_size", "block_count", "block_timeout_ms", "bpf", "snaplen", "archive_dir",
             "archive_rotate_bytes", "archive_rotate_seconds", "archive_keep", "fanout_group")
    overrides = {n: getattr(args, n, None) for n in names}
    table = getattr(args, "config_table", None) or {}
    return load(LiveSettings, SECTION, table.get(SECTION), os.environ, overrides)


def summary_text(s: LiveSummary, out: Path) -> str:
    st = s.flow_stats
    lines = [
        f"sensor: {s.interface} ({s.method}): {s.frames:,} frames, "
        f"{st.get('dark_packets', 0):,} to the darknet",
        f"sensor: kernel: {s.kernel_packets:,} packets, {s.kernel_drops:,} dropped, "
        f"{s.kernel_freezes:,} ring-full events",
        f"sensor: {s.flows:,} flows in {s.batches:,} interval(s) -> {out}",
    ]
    if s.archive_files:
        lines.append(f"sensor: archive: {s.archive_files:,} pcap file(s), {s.archive_bytes:,} bytes")
    return "\n".join(lines)


def run_interface(args: argparse.Namespace, settings: SensorSettings) -> int:
    """Capture on ``args.interface`` until SIGTERM/SIGINT; write flows as intervals close."""
    from sensor.live.agent import run_live  # the ring and decoder load only for live capture
    from sensor.sensor_cmd import jsonl_lines, write_file_batch

    live = _live_settings(args)
    if not settings.darknet:
        raise ConfigError("--darknet", "no dark prefixes given (flag, [sensor] darknet or "
                          "DARKNET_IODEF_SENSOR_DARKNET)")
    darknet = DarkPrefixes.parse(settings.darknet, setting="--darknet")
    if getattr(args, "metrics", None):
        from darknet_iodef.metrics import serve

        serve(args.metrics)
    out = Path(args.out)
    with contextlib.ExitStack() as stack:
        try:
            flows_fh = stack.enter_context(open(out, "wb"))
            json_fh: IO[Any] | None = None
            if args.jsonl == "-":
                json_fh = sys.stdout
            elif args.jsonl:
                json_fh = stack.enter_context(open(args.jsonl, "w"))
        except OSError as exc:
            raise ConfigError("--out/--jsonl", f"cannot write: {exc.strerror or exc}") from None

        def sink(batch: FlowBatch) -> None:
            write_file_batch(flows_fh, batch)
            flows_fh.flush()
            if json_fh is not None:
                json_fh.write("\n".join(jsonl_lines(batch)) + "\n")
                json_fh.flush()

        summary = run_live(args.interface, darknet, settings, live, sink,
                           reload_callbacks=[lambda: log.info("The sensor has nothing to reload.")])
    print(summary_text(summary, out), file=sys.stderr)
    return 0
