"""Pipeline subcommands: ``run`` (embedded), ``aggregator`` and ``reporter`` (Kafka mode).

``darknet-iodef sensor --kafka`` lives with the sensor command and calls
:func:`sensor_kafka` here, so the three Kafka-mode processes share this
plumbing: configuration from one TOML file, the environment and flags;
metrics on ``--metrics``; SIGTERM/SIGINT stop after the current batch (what
was not committed is read again by whoever owns it next); ``--until-idle``
ends a finite run (tests, replays) once the input has been drained and
nothing came for that long.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aggregator.settings import AggregatorSettings
from darknet_iodef.bus import open_bus
from darknet_iodef.bus.options import add_bus_arguments, bus_settings, metrics_settings, start_metrics
from darknet_iodef.errors import ConfigError, TransientError
from darknet_iodef.metrics import aggregator_metrics, reporter_metrics, sensor_metrics
from darknet_iodef.pipeline.settings import SECTION, PipelineSettings
from darknet_iodef.runner import Runner, runner_for
from darknet_iodef.settings import load, load_toml
from reporter.settings import ReporterSettings
from sensor.settings import SensorSettings

__all__ = ["register", "sensor_kafka"]

log = logging.getLogger(__name__)

RUN_DESCRIPTION = """\
Run sensor, aggregator and reporter in one process on captures (or live on an
interface) and write, under --out DIR:

  DIR/events.jsonl           detection events (JSON lines, IntelMQ field names)
  DIR/incidents/...          IODEF 2.0 documents (XML and RFC 8727 JSON) per recipient;
                             without --contacts, per source network under incidents/unassigned/
  DIR/summary.json           what was found, in figures

The same stages run across machines through Kafka: see 'darknet-iodef
sensor --kafka', 'darknet-iodef aggregator' and 'darknet-iodef reporter'
(docs/pipeline.md).
"""


def _doc(args: argparse.Namespace) -> dict[str, Any]:
    doc = load_toml(args.config) if getattr(args, "config", None) else {}
    args.config_table = doc
    return doc


def _load(cls: type, section: str, doc: dict[str, Any], overrides: dict[str, Any]) -> Any:
    return load(cls, section, doc.get(section), os.environ, overrides)


def _pipeline(doc: dict[str, Any], args: argparse.Namespace) -> PipelineSettings:
    overrides = {
        "checkpoint_dir": getattr(args, "checkpoint_dir", None),
        "sensors": getattr(args, "sensors", None),
    }
    settings: PipelineSettings = _load(PipelineSettings, SECTION, doc, overrides)
    return settings


def _contacts(path: Path | None) -> Any:
    if path is None:
        return None
    from reporter.contacts import load_contacts

    return load_contacts(path)


def _deliver(args: argparse.Namespace, operator: str, out: Path) -> Any:
    from reporter import delivery_cmd

    if not getattr(args, "send", False):
        return None
    delivery_cmd.prepare(args, out)

    def deliver(reports: Sequence[Any]) -> None:
        line = delivery_cmd.send_if_asked(args, reports, operator, out)
        if line:
            log.info("%s", line)

    return deliver


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration (every section)")
    p.add_argument("--darknet", metavar="CIDR[,CIDR...]", help="the dark prefixes, IPv4 and IPv6")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the pipeline's subcommands to ``darknet-iodef``."""
    from reporter import delivery_cmd

    p = subparsers.add_parser(
        "run",
        help="sensor, aggregator and reporter in one process",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "captures", nargs="*", metavar="CAPTURE", help="pcap/pcapng files, read in order as one stream"
    )
    _add_common(p)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument("--contacts", type=Path, metavar="FILE", help="constituency table (.toml or .csv)")
    p.add_argument("--allow-list", metavar="FILE", help="known research scanners: CSV prefix,name")
    p.add_argument("--interface", metavar="IFACE", help="capture live on IFACE until SIGTERM/SIGINT")
    p.add_argument("--name", metavar="SENSOR", help="the sensor's name (default: host name)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics here")
    delivery_cmd.add_arguments(p)
    p.set_defaults(func=cmd_run)

    a = subparsers.add_parser(
        "aggregator",
        help="Kafka mode: flow batches in, events out (a consumer group)",
        description="Consume flow batches from Kafka, detect, produce events. "
        "Members of one group share the flows partitions (docs/pipeline.md).",
    )
    _add_common(a)
    add_bus_arguments(a)
    a.add_argument("--allow-list", metavar="FILE", help="known research scanners: CSV prefix,name")
    a.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="per-partition checkpoints, shared by the group ([pipeline] checkpoint_dir)",
    )
    a.add_argument(
        "--sensors",
        metavar="NAME[,NAME...]",
        help="the sensors to wait for before closing an interval ([pipeline] sensors)",
    )
    a.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop (emitting what is held) once drained and idle this long (tests, replays)",
    )
    a.set_defaults(func=cmd_aggregator)

    r = subparsers.add_parser(
        "reporter",
        help="Kafka mode: events in, IODEF documents out",
        description="Consume events from Kafka, write documents per reporting "
        "period as event time passes it (docs/pipeline.md).",
    )
    _add_common(r)
    add_bus_arguments(r)
    r.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    r.add_argument("--contacts", type=Path, metavar="FILE", help="constituency table (.toml or .csv)")
    r.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop (closing every period) once drained and idle this long (tests, replays)",
    )
    delivery_cmd.add_arguments(r)
    r.set_defaults(func=cmd_reporter)


# -- run ------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from darknet_iodef.pipeline.embedded import run_embedded
    from darknet_iodef.pipeline.summary import summary_text

    if not args.captures and not args.interface:
        raise ConfigError("CAPTURE", "give capture files or --interface")
    if args.captures and args.interface:
        raise ConfigError("--interface", "give capture files or --interface, not both")
    doc = _doc(args)
    sensor = _load(SensorSettings, "sensor", doc, {"darknet": args.darknet, "name": args.name})
    agg = _load(
        AggregatorSettings,
        "aggregator",
        doc,
        {"darknet": args.darknet or sensor.darknet, "allow_list": args.allow_list},
    )
    rep = _load(ReporterSettings, "reporter", doc, {"darknet": args.darknet or sensor.darknet})
    if not sensor.darknet:
        raise ConfigError("--darknet", "no dark prefixes given (flag or [sensor] darknet)")
    start_metrics(metrics_settings(args, doc))
    live = None
    if args.interface:
        from sensor.live.settings import LiveSettings

        live = _load(LiveSettings, "live", doc, {})
    out: Path = args.out
    deliver = _deliver(args, rep.operator_name, out / "incidents")
    stop = threading.Event()
    # live: SIGTERM/SIGINT end the capture, and what was captured is reported; files: Ctrl-C
    # interrupts (nothing half-written is left as if complete: the summary is written last)
    with _signals(stop) if args.interface else contextlib.nullcontext():
        result = run_embedded(
            args.captures,
            out,
            sensor=sensor,
            aggregator=agg,
            reporter=rep,
            pipeline=_pipeline(doc, args),
            bus=bus_settings(args, doc),
            contacts=_contacts(args.contacts),
            interface=args.interface,
            live=live,
            stop=stop,
            deliver=deliver,
            # SIGHUP in a live run re-reads the table from the same file
            contacts_loader=(lambda: _contacts(args.contacts)) if args.contacts else None,
        )
    print(summary_text(result.summary))
    print(f"written   {out}/events.jsonl, {out}/summary.json")
    return 0


# -- Kafka mode -----------------------------------------------------------------------------------
@contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _kafka_bus(args: argparse.Namespace, doc: dict[str, Any]) -> Any:
    settings = bus_settings(args, doc)
    if not settings.servers:
        raise ConfigError(
            "--kafka", "Kafka mode needs the bootstrap servers (--kafka HOST:PORT or [bus] kafka)"
        )
    start_metrics(metrics_settings(args, doc))
    return settings, open_bus(settings)


def _partitions(bus: Any, topic: str, default: int) -> int:
    """The topic's real partition count (it may have been created with another than configured)."""
    try:
        return int(bus.partitions(topic))
    except TransientError:
        return default


def _drained(runner: Runner) -> bool:
    try:
        return runner.consumer.at_end()
    except TransientError:
        return False


def serve(runner: Runner, until_idle: float | None, probe: Callable[[], object] | None = None) -> None:
    """Run until stopped; with ``until_idle``, finish once drained and idle that long.

    Idle time counts only while the input is known to be drained *and*
    ``probe`` (a round trip to the broker) succeeds: while the broker is away
    nothing can be known -- a client may answer from what it cached -- and an
    outage must not end the run.
    """
    if until_idle is None:
        runner.run()
        return
    last = time.monotonic()
    while not runner.stop.is_set():
        if runner.step() or not _drained(runner) or not _reachable(probe):
            last = time.monotonic()
        elif time.monotonic() - last >= until_idle:
            _finish(runner)
            return


def _reachable(probe: Callable[[], object] | None) -> bool:
    if probe is None:
        return True
    try:
        probe()
        return True
    except TransientError:
        return False


def _finish(runner: Runner) -> None:
    """End of a finite input: emit what the stage holds, hand it over, checkpoint, then commit.

    Not ``Runner.run(until_end=True)``: that commits everything before the
    aggregator could checkpoint what the commit covers. Here the commit comes
    last and goes through ``held_offsets`` like every other.
    """
    from darknet_iodef.runner import Publisher, Stopped

    try:
        Publisher(runner.producer, name=runner.stage.name, backoff=runner.backoff, stop=runner.stop).publish(
            runner.stage.finish()
        )
    except Stopped:
        return
    checkpoint_all = getattr(runner.stage, "checkpoint_all", None)
    if checkpoint_all is not None:
        checkpoint_all()
    runner.step(0.0)


def _close(runner: Runner) -> None:
    for part in (runner.consumer, runner.producer):
        try:
            part.close()
        except Exception:  # closing a client whose broker is gone must not hide the real outcome
            log.debug("closing %s failed", type(part).__name__, exc_info=True)


def cmd_aggregator(args: argparse.Namespace) -> int:
    from darknet_iodef.pipeline.aggregator_stage import AggregatorStage
    from darknet_iodef.pipeline.checkpoints import CheckpointStore

    doc = _doc(args)
    agg = _load(
        AggregatorSettings, "aggregator", doc, {"darknet": args.darknet, "allow_list": args.allow_list}
    )
    if not agg.darknet:
        raise ConfigError("--darknet", "no dark prefixes given (flag or [aggregator] darknet)")
    pipe = _pipeline(doc, args)
    if not pipe.checkpoint_dir:
        raise ConfigError(
            "--checkpoint-dir", "Kafka mode needs a checkpoint directory ([pipeline] checkpoint_dir)"
        )
    settings, bus = _kafka_bus(args, doc)
    stop = threading.Event()
    flows_partitions = _partitions(bus, settings.flows_topic, settings.flows_partitions)
    stage = AggregatorStage(
        agg,
        events_topic=settings.events_topic,
        flows_partitions=flows_partitions,
        checkpoints=CheckpointStore(pipe.checkpoint_dir),
        checkpoint_interval_s=pipe.checkpoint_interval_s,
        sensor_lag_s=pipe.sensor_lag_s,
        sensors=pipe.sensor_names,
        metrics=aggregator_metrics(),
    )
    with _signals(stop):
        runner = runner_for(
            stage, bus, settings, group=settings.aggregator_group, topics=[settings.flows_topic], stop=stop
        )
        try:
            serve(runner, args.until_idle, lambda: bus.ensure_topics([settings.flows_topic]))
            if runner.producer.pending() == 0:
                stage.checkpoint_all()
        finally:
            _close(runner)
    t = stage.totals
    print(
        f"aggregator: {t['batches']} batches, {t['flows']:,} flows, {t['events']} events produced, "
        f"{runner.stats.dead_letters} dead letters, {runner.stats.retries} retries",
        file=sys.stderr,
    )
    return 0


def cmd_reporter(args: argparse.Namespace) -> int:
    from darknet_iodef.pipeline.reporter_stage import ReporterStage

    doc = _doc(args)
    rep = _load(ReporterSettings, "reporter", doc, {"darknet": args.darknet})
    pipe = _pipeline(doc, args)
    settings, bus = _kafka_bus(args, doc)
    out: Path = args.out
    incidents = out / "incidents"
    stage = ReporterStage(
        rep,
        incidents,
        contacts=_contacts(args.contacts),
        grace_s=pipe.report_grace_s,
        keep_periods=pipe.report_keep_periods,
        events_out=out / "events.jsonl",
        deliver=_deliver(args, rep.operator_name, incidents),
        metrics=reporter_metrics(),
        resume=True,
    )
    stop = threading.Event()
    with _signals(stop):
        runner = runner_for(
            stage, bus, settings, group=settings.reporter_group, topics=[settings.events_topic], stop=stop
        )
        try:
            serve(runner, args.until_idle, lambda: bus.ensure_topics([settings.events_topic]))
        finally:
            stage.close()
            _close(runner)
    print(
        f"reporter: {stage.events_read} events ({stage.duplicates} duplicates dropped), "
        f"{stage.documents()} documents -> {incidents}",
        file=sys.stderr,
    )
    return 0


def sensor_kafka(args: argparse.Namespace, settings: SensorSettings) -> int:
    """``darknet-iodef sensor --kafka``: captures or a live interface -> flow messages on Kafka."""
    from darknet_iodef.pipeline.sensor_stage import SensorStage, publish_captures, publish_live, publisher_for
    from darknet_iodef.runner import Stopped

    doc = getattr(args, "config_table", None) or {}
    bus_cfg, bus = _kafka_bus(args, doc)
    stop = threading.Event()
    with _signals(stop):
        publisher = publisher_for(bus, bus_cfg, stop, None)
        stage = SensorStage(
            bus_cfg.flows_topic,
            _partitions(bus, bus_cfg.flows_topic, bus_cfg.flows_partitions),
            metrics=sensor_metrics(),
        )
        try:
            if getattr(args, "interface", None):
                from sensor.live.command import _live_settings

                publish_live(
                    args.interface, settings, _live_settings(args), stage, publisher.publish, stop=stop
                )
            else:
                publish_captures(args.pcap, settings, stage, publisher.publish)
        except Stopped:
            log.warning("sensor stopped with %d flow messages not handed over", publisher.producer.pending())
            return 1
        finally:
            publisher.producer.close()
    t = stage.totals
    print(
        f"sensor: {t.capture_records:,} packets, {t.flows:,} flows in {t.batches} interval(s) -> "
        f"{t.messages} messages on {bus_cfg.flows_topic}",
        file=sys.stderr,
    )
    return 0
