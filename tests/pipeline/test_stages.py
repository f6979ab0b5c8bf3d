"""The stages on the in-memory bus: several sensors and aggregators, moved partitions, restarts.

The reference is ``darknet-iodef run`` on the whole sample capture; here the
capture is split by source between two sensors, the flows topic has 8
partitions shared by two aggregators of one group, and the outputs must be
the same events (spoofing summaries aside: they are per partition, with
their own ids) and byte-identical documents.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from aggregator.settings import AggregatorSettings
from darknet_iodef.bus.memory import MemoryBus
from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.pipeline.aggregator_stage import AggregatorStage
from darknet_iodef.pipeline.checkpoints import CheckpointStore
from darknet_iodef.pipeline.reporter_stage import ReporterStage
from darknet_iodef.pipeline.sensor_stage import SensorStage, publish_captures, publisher_for
from darknet_iodef.runner import Runner, runner_for
from darknet_iodef.settings import load
from reporter.settings import ReporterSettings
from sensor.settings import SensorSettings
from tests.pipeline.helpers import SAMPLE_DARKNET, document_files, events_without_spoofing

BUS = BusSettings(flows_partitions=8, events_partitions=4)


def _sensor(bus: MemoryBus, capture: Path, name: str) -> None:
    settings = load(SensorSettings, "sensor", None, {}, {"darknet": SAMPLE_DARKNET, "name": name})
    publisher = publisher_for(bus, BUS)
    publish_captures(
        [str(capture)], settings, SensorStage(BUS.flows_topic, 8), publisher.publish, progress_enabled=False
    )


def _aggregator(bus: MemoryBus, checkpoints: Path, every: float = 0) -> tuple[AggregatorStage, Runner]:
    settings = load(AggregatorSettings, "aggregator", None, {}, {"darknet": SAMPLE_DARKNET})
    stage = AggregatorStage(
        settings,
        events_topic=BUS.events_topic,
        flows_partitions=8,
        checkpoints=CheckpointStore(checkpoints),
        checkpoint_interval_s=every,
        sensors=frozenset({"sensor-a", "sensor-b"}),
    )
    runner = runner_for(
        stage, bus, BUS, group=BUS.aggregator_group, topics=[BUS.flows_topic], with_metrics=False
    )
    runner.max_records = 3  # small polls: partitions are mid-stream when members come and go
    return stage, runner


def _report(bus: MemoryBus, out: Path) -> ReporterStage:
    settings = load(ReporterSettings, "reporter", None, {}, {"darknet": SAMPLE_DARKNET})
    stage = ReporterStage(settings, out / "incidents", events_out=out / "events.jsonl")
    runner = runner_for(
        stage, bus, BUS, group=BUS.reporter_group, topics=[BUS.events_topic], with_metrics=False
    )
    runner.run(until_end=True)
    stage.close()
    return stage


def _compare(reference: Path, out: Path) -> None:
    assert events_without_spoofing(out / "events.jsonl") == events_without_spoofing(
        reference / "events.jsonl"
    )
    assert document_files(out / "incidents") == document_files(reference / "incidents")


def test_two_sensors_two_aggregators_give_the_embedded_result(
    tmp_path: Path, reference: Path, halves: tuple[Path, Path]
) -> None:
    bus = MemoryBus(BUS.topic_partitions())
    _sensor(bus, halves[0], "sensor-a")
    _sensor(bus, halves[1], "sensor-b")
    (s1, r1), (s2, r2) = _aggregator(bus, tmp_path / "ckpt"), _aggregator(bus, tmp_path / "ckpt")
    assert len(r1.consumer.assignment()) == len(r2.consumer.assignment()) == 4
    while r1.step(0.0) + r2.step(0.0):
        pass
    r1.run(until_end=True)
    r2.run(until_end=True)
    assert set(s1.parts) | set(s2.parts) == {(BUS.flows_topic, p) for p in range(8)}
    stage = _report(bus, tmp_path / "out")
    assert stage.duplicates == 0
    _compare(reference, tmp_path / "out")
    # the spoofing summaries say which partition they cover, and their packets add up to the reference's
    ref = [json.loads(x) for x in (reference / "events.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (tmp_path / "out/events.jsonl").read_text().splitlines()]
    spoof = [e for e in got if e["classification.type"] == "masquerade"]
    assert spoof and all(e["extra.partition"].endswith("/8") for e in spoof)
    assert len({e["extra.event_id"] for e in spoof}) == len({(e["extra.event_id"], 0) for e in spoof})
    assert all("extra.partition" not in e for e in ref)


def test_a_member_that_dies_mid_stream_loses_and_duplicates_no_incident(
    tmp_path: Path, reference: Path, halves: tuple[Path, Path]
) -> None:
    bus = MemoryBus(BUS.topic_partitions())
    _sensor(bus, halves[0], "sensor-a")
    _sensor(bus, halves[1], "sensor-b")
    # the first member checkpoints each partition once, early: all it does after that is lost
    (s1, r1), (s2, r2) = _aggregator(bus, tmp_path / "ckpt", every=3600), _aggregator(bus, tmp_path / "ckpt")
    for _ in range(12):  # both work a while; then the first dies without a word (no commit, no close)
        r1.step(0.0)
        r2.step(0.0)
    assert any(p.saved_offset for p in s1.parts.values())
    # a dead member: leave the group as Kafka does after the session timeout, nothing else
    r1.consumer.close()
    while r2.step(0.0):
        pass
    r2.run(until_end=True)
    assert len(s2.parts) == 8
    stage = _report(bus, tmp_path / "out")
    assert stage.duplicates > 0  # the events after the dead member's last checkpoint came again
    _compare(reference, tmp_path / "out")


def test_an_aggregator_restarted_from_its_checkpoints_continues(
    tmp_path: Path, reference: Path, halves: tuple[Path, Path]
) -> None:
    bus = MemoryBus(BUS.topic_partitions())
    _sensor(bus, halves[0], "sensor-a")
    _sensor(bus, halves[1], "sensor-b")
    _, r1 = _aggregator(bus, tmp_path / "ckpt")
    for _ in range(30):
        r1.step(0.0)
    r1.consumer.close()  # killed: the state in memory is gone
    s2, r2 = _aggregator(bus, tmp_path / "ckpt")
    r2.run(until_end=True)
    assert sum(1 for p in s2.parts.values() if p.generation > 1) > 0  # restored, not started afresh
    _report(bus, tmp_path / "out")
    _compare(reference, tmp_path / "out")


def test_poison_flow_messages_are_dead_lettered(tmp_path: Path) -> None:
    bus = MemoryBus(BUS.topic_partitions())
    producer = bus.producer()
    producer.send(BUS.flows_topic, None, b"not a flow batch", 3)
    producer.flush()
    stage, runner = _aggregator(bus, tmp_path / "ckpt")
    runner.run(until_end=True)
    [dead] = bus.messages(BUS.dead_letter_topic)
    assert b"not a flow batch" in dead.value or json.loads(dead.value)["stage"] == "aggregator"
    assert runner.stats.dead_letters == 1 and stage.totals["batches"] == 0


def test_embedded_bus_has_one_partition_per_topic() -> None:
    b = dataclasses.replace(BUS, flows_partitions=1, events_partitions=1)
    assert b.topic_partitions()[BUS.flows_topic] == 1


def test_a_broker_that_forgets_everything_costs_nothing_already_consumed(
    tmp_path: Path, reference: Path, quarters: dict[str, Path]
) -> None:
    """Phase one consumed, then the broker loses every topic and commit; phase two arrives after."""
    bus = MemoryBus(BUS.topic_partitions())
    _sensor(bus, quarters["a1"], "sensor-a")
    _sensor(bus, quarters["b1"], "sensor-b")
    stage, runner = _aggregator(bus, tmp_path / "ckpt")
    rep_settings = load(ReporterSettings, "reporter", None, {}, {"darknet": SAMPLE_DARKNET})
    rep = ReporterStage(rep_settings, tmp_path / "out/incidents", events_out=tmp_path / "out/events.jsonl")
    rep_runner = runner_for(
        rep, bus, BUS, group=BUS.reporter_group, topics=[BUS.events_topic], with_metrics=False
    )
    while runner.step(0.0) + rep_runner.step(0.0):
        pass
    held = sum(len(p.aligner._pending) for p in stage.parts.values())
    assert held == 16  # the open interval of both sensors on every partition, only in memory now
    bus.forget()
    bus.ensure_topics(list(BUS.topic_partitions()))
    _sensor(bus, quarters["a2"], "sensor-a")
    _sensor(bus, quarters["b2"], "sensor-b")
    runner.run(until_end=True)
    rep_runner.run(until_end=True)
    rep.close()
    _compare(reference, tmp_path / "out")
