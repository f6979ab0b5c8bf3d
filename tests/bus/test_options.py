"""Kafka-mode plumbing the component commands share: flags, [bus]/[metrics] assembly, runner_for."""

from __future__ import annotations

import argparse
import json

import pytest

from darknet_iodef.bus import BusSettings, MemoryBus, Message, open_bus
from darknet_iodef.bus.kafka import KafkaBus
from darknet_iodef.bus.options import add_bus_arguments, bus_settings, metrics_settings, start_metrics
from darknet_iodef.errors import ConfigError
from darknet_iodef.runner import Output, Stage, runner_for


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bus_arguments(parser)
    return parser.parse_args(argv)


def test_flags_win_over_file_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKNET_IODEF_BUS_KAFKA", "env:1")
    monkeypatch.setenv("DARKNET_IODEF_BUS_EVENTS_PARTITIONS", "6")
    doc = {"bus": {"kafka": "file:1", "flows_partitions": 2}, "metrics": {"listen": "127.0.0.1:9000"}}
    s = bus_settings(parse(["--kafka", "flag:1,flag:2"]), doc)
    assert (s.kafka, s.servers, s.flows_partitions, s.events_partitions) == (
        "flag:1,flag:2", ["flag:1", "flag:2"], 2, 6)
    assert bus_settings(parse([]), doc).kafka == "env:1"
    assert metrics_settings(parse([]), doc).listen == "127.0.0.1:9000"
    assert metrics_settings(parse(["--metrics", "127.0.0.1:9001"]), doc).listen == "127.0.0.1:9001"
    assert start_metrics(metrics_settings(parse([]), None)) is None  # off by default
    with pytest.raises(ConfigError) as err:
        bus_settings(parse(["--kafka", "nohost"]), None)
    assert str(err.value) == "setting [bus] kafka: 'nohost' is not HOST:PORT"


def test_open_bus_picks_the_implementation() -> None:
    memory = open_bus(BusSettings())
    assert isinstance(memory, MemoryBus)
    assert memory.partitions("darknet.flows") == 8  # the configured count, not 1
    assert isinstance(open_bus(BusSettings(kafka="127.0.0.1:9")), KafkaBus)


class Count(Stage):
    name = "count"

    def process(self, message: Message) -> list[Output]:
        return [Output("darknet.events", message.key, json.dumps({"n": len(message.value)}).encode())]


def test_runner_for_wires_a_stage_from_the_settings() -> None:
    settings = BusSettings(flows_partitions=3, events_partitions=2, max_poll_records=7, poll_timeout_s=0.01)
    bus = open_bus(settings)
    producer = bus.producer()
    for i in range(20):
        producer.send(settings.flows_topic, b"src-%d" % i, b"x" * i)
    producer.flush()
    runner = runner_for(Count(), bus, settings, group=settings.aggregator_group,
                        topics=[settings.flows_topic], with_metrics=False)
    assert isinstance(bus, MemoryBus)
    assert bus.end_offsets(settings.events_topic) == [0, 0]  # created with the configured partitions
    assert (runner.max_records, runner.poll_timeout) == (7, 0.01)
    assert runner.dead_letter_topic == "darknet.deadletter"
    stats = runner.run(until_end=True)
    assert (stats.consumed, stats.produced) == (20, 20)
    assert sorted(json.loads(m.value)["n"] for m in bus.messages(settings.events_topic)) == list(range(20))
