"""Metric names follow STYLE.md; the endpoint serves them on the configured loopback address."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from darknet_iodef.errors import ConfigError
from darknet_iodef.metrics import (
    AggregatorMetrics,
    MetricsSettings,
    ReceiverMetrics,
    ReporterMetrics,
    SensorMetrics,
    StageMetrics,
    parse_listen,
    serve,
)

NAME = re.compile(r"^darknet_(sensor|aggregator|reporter|receiver|upper)_[a-z]+(_[a-z]+)*$")
UNITS = ("_total", "_seconds", "_bytes", "_packets", "_flows", "_events", "_reports", "_messages", "_sources")
FORBIDDEN_LABELS = {"ip", "address", "source", "src", "dst", "asn", "port", "prefix", "network"}


def all_metrics() -> CollectorRegistry:
    r = CollectorRegistry()
    for cls in (SensorMetrics, AggregatorMetrics, ReporterMetrics, ReceiverMetrics):
        cls.create(r)
    StageMetrics.create("aggregator", r)
    return r


def test_names_units_and_labels() -> None:
    families = list(all_metrics().collect())
    names = sorted(f.name + ("_total" if f.type == "counter" else "") for f in families)
    assert "darknet_sensor_received_packets_total" in names
    assert "darknet_sensor_received_bytes_total" in names
    assert "darknet_sensor_dropped_packets_total" in names
    assert "darknet_sensor_produced_flows_total" in names
    assert "darknet_aggregator_events_total" in names
    assert {"darknet_reporter_written_reports_total", "darknet_reporter_sent_reports_total",
            "darknet_reporter_failed_reports_total", "darknet_reporter_queued_reports"} <= set(names)
    assert "darknet_aggregator_consumer_lag_messages" in names
    assert "darknet_aggregator_processing_duration_seconds" in names
    for name in names:
        assert NAME.match(name), name
        assert name.endswith(UNITS), f"{name}: no base unit"
    for family in families:
        for sample in family.samples:
            assert not FORBIDDEN_LABELS & set(sample.labels), (family.name, sample.labels)


def test_a_component_name_must_fit_a_metric_name() -> None:
    with pytest.raises(ValueError):
        StageMetrics.create("my-stage", CollectorRegistry())


def test_listen_address_is_validated() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ConfigError) as err:
        MetricsSettings(listen="9464")
    assert str(err.value) == "setting [metrics] listen: '9464' is not HOST:PORT"


def test_endpoint_serves_the_registry_on_loopback() -> None:
    registry = CollectorRegistry()
    sensor = SensorMetrics.create(registry)
    sensor.received_packets.inc(3)
    sensor.dropped_packets.labels("not_dark").inc(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve(f"127.0.0.1:{port}", registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "darknet_sensor_received_packets_total 3.0" in text.splitlines()
    assert 'darknet_sensor_dropped_packets_total{reason="not_dark"} 2.0' in text.splitlines()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError) as err:
            serve(f"127.0.0.1:{taken.getsockname()[1]}", registry)
    assert err.value.setting == "[metrics] listen"


def test_every_metric_is_documented(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "operations.md").read_text()
    for family in all_metrics().collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        documented = name.replace("darknet_aggregator_", "darknet_<component>_")
        assert f"`{name}`" in doc or f"`{documented}`" in doc, name
