"""``darknet-iodef aggregate``: flow files in, detection events (JSON lines) out.

The thin I/O adapter around :class:`~aggregator.engine.Aggregator`: it reads
flow files in the order given as one stream of event time, writes each event
with :func:`~darknet_iodef.events.encode_event`, and at the end emits what
is still pending. A damaged flow file gives one line on stderr, is counted,
and the other files are still read (the exit code is then 1). With
``--checkpoint`` the state is restored at start and saved after each file
(after the events are flushed to disk), so a restart neither repeats nor
loses events; batches already processed are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

from aggregator.checkpoint import load_checkpoint, save_checkpoint
from aggregator.engine import Aggregator
from aggregator.known_scanners import KnownScanners
from aggregator.settings import AggregatorSettings
from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.errors import ConfigError, InputError
from darknet_iodef.events import encode_event
from darknet_iodef.flowtuple import read_batches
from darknet_iodef.settings import load

__all__ = ["SECTION", "register", "run_aggregate"]

log = logging.getLogger(__name__)
SECTION = "aggregator"

DESCRIPTION = """\
Detect scans (and the tools behind them), spoofed traffic and DoS backscatter
in flow files written by 'darknet-iodef sensor', and write the events as JSON
lines with IntelMQ field names (docs/detection.md).

Thresholds scale with the telescope size n (the IPv4 addresses in --darknet);
every threshold is a setting of the [aggregator] table of the configuration,
or DARKNET_IODEF_AGGREGATOR_<NAME> in the environment.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "aggregate",
        help="detect scans, tools, spoofing and backscatter in flow files",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--in", dest="inputs", nargs="+", required=True, metavar="FLOWS", help="flow files, in order"
    )
    p.add_argument("--darknet", metavar="CIDR[,CIDR...]", help="the dark prefixes (sets n)")
    p.add_argument("--out", required=True, metavar="EVENTS.jsonl", help="events as JSON lines ('-': stdout)")
    p.add_argument("--allow-list", metavar="FILE", help="known research scanners: CSV prefix,name")
    p.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="restore state from FILE and save it after each input (EVENTS is then appended to)",
    )
    p.add_argument("--feed-name", metavar="NAME", help="feed.name of the events")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any [aggregator] setting, e.g. --set scan_min_destinations=50 (repeatable)",
    )
    p.add_argument("--stats", action="store_true", help="print the counters as JSON on stderr at the end")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "darknet": args.darknet,
        "allow_list": args.allow_list,
        "checkpoint": args.checkpoint,
        "feed_name": args.feed_name,
    }
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--set", f"{item!r} is not NAME=VALUE")
        overrides[name.strip()] = value.strip()
    table = (getattr(args, "config_table", None) or {}).get(SECTION)
    known_names = {f for f in AggregatorSettings.__dataclass_fields__}
    for name in overrides:
        if name not in known_names:
            raise ConfigError(f"--set {name}", "unknown setting")
    settings = load(AggregatorSettings, SECTION, table, os.environ, overrides)
    if not settings.darknet:
        raise ConfigError("darknet", "no dark prefixes: give --darknet")
    stats = run_aggregate(settings, [Path(p) for p in args.inputs], args.out)
    if args.stats:
        print(json.dumps(stats, sort_keys=True), file=sys.stderr)
    return 1 if stats["bad_files_total"] else 0


def run_aggregate(settings: AggregatorSettings, inputs: list[Path], out: str) -> dict[str, int]:
    darknet = DarkPrefixes.parse(settings.darknet)
    known = KnownScanners(settings.allow_list or None)
    agg = Aggregator(settings, darknet, known)
    if settings.checkpoint and load_checkpoint(agg, settings.checkpoint):
        log.info("Restored state from %s", settings.checkpoint)
    bad = 0
    sink: BinaryIO
    sink = sys.stdout.buffer if out == "-" else open(out, "ab" if settings.checkpoint else "wb")  # noqa: SIM115
    try:
        for path in inputs:
            try:
                with open(path, "rb") as fh:
                    for batch in read_batches(fh, str(path)):
                        _write(sink, agg.process(batch))
            except InputError as exc:
                bad += 1
                print(f"darknet-iodef: {exc.line()}", file=sys.stderr)
            except OSError as exc:
                bad += 1
                print(f"darknet-iodef: {path}: {exc.strerror}", file=sys.stderr)
            if settings.checkpoint:
                _durable(sink)
                save_checkpoint(agg, settings.checkpoint)
        _write(sink, agg.flush())
        _durable(sink)
        if settings.checkpoint:
            save_checkpoint(agg, settings.checkpoint)
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    stats = agg.stats()
    stats["bad_files_total"] = bad
    log.info(
        "Aggregated %d flow tuples in %d batches into %d events (%d bad files)",
        stats["flows_total"],
        stats["batches_total"],
        stats["events_total"],
        bad,
    )
    return stats


def _write(sink: BinaryIO, events: list[dict[str, Any]]) -> None:
    for ev in events:
        sink.write(encode_event(ev))


def _durable(sink: BinaryIO) -> None:
    sink.flush()
    with contextlib.suppress(OSError, ValueError):  # a pipe or terminal cannot be synced
        os.fsync(sink.fileno())
