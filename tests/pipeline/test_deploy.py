"""deploy/: the compose file parses and names files that exist, the dashboard uses real metric names,
the aggregator and reporter units run without privileges. (No Docker engine here: nothing is started.)"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from darknet_iodef import metrics as m


def _declared_series() -> set[str]:
    """Every series name the components can expose, from the one declaration module."""
    reg = CollectorRegistry()
    for cls in (m.SensorMetrics, m.LiveMetrics, m.AggregatorMetrics, m.ReporterMetrics, m.ReceiverMetrics):
        cls.create(reg)
    for component in ("aggregator", "reporter"):  # the sensor only produces: no stage metrics
        m.StageMetrics.create(component, reg)
    names: set[str] = set()
    for family in reg.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_compose_parses_and_every_mounted_file_exists(repo_root: Path) -> None:
    deploy = repo_root / "deploy"
    doc = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"kafka", "sensor", "aggregator", "reporter", "prometheus"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert (deploy / services["aggregator"]["build"]["dockerfile"].removeprefix("deploy/")).is_file()
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (deploy / source).exists(), f"{name} mounts {source}, which does not exist"
    for component in ("sensor", "aggregator", "reporter"):
        assert services[component]["command"][0] == component
    dockerfile = (deploy / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (repo_root / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_prometheus_scrapes_the_ports_the_components_serve(repo_root: Path) -> None:
    prom = yaml.safe_load((repo_root / "deploy/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    compose = yaml.safe_load((repo_root / "deploy/docker-compose.yml").read_text())["services"]
    for component in ("sensor", "aggregator", "reporter"):
        command = compose[component]["command"]
        port = command[command.index("--metrics") + 1].rsplit(":", 1)[1]
        assert f"{component}:{port}" in targets


def test_dashboard_uses_only_declared_metric_names(repo_root: Path) -> None:
    dash = json.loads((repo_root / "deploy/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bdarknet_[a-z_]+", e)}
    declared = _declared_series()
    assert used and used <= declared, sorted(used - declared)
    assert {"darknet_aggregator_consumer_lag_messages", "darknet_reporter_consumer_lag_messages"} <= used


def test_aggregator_and_reporter_units_have_no_privileges(repo_root: Path) -> None:
    for component in ("aggregator", "reporter"):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        text = (repo_root / f"deploy/systemd/darknet-iodef-{component}.service").read_text()
        unit.read_string(re.sub(r"\\\n\s*", " ", text))
        service = unit["Service"]
        assert service["User"] == "darknet-iodef"
        assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
        assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
        assert f"darknet-iodef --log-format json {component}" in service["ExecStart"]
        assert "AF_PACKET" not in service["RestrictAddressFamilies"]


def test_known_scanners_example_loads(repo_root: Path) -> None:
    from aggregator.known_scanners import parse_allow_list

    path = repo_root / "deploy/known-scanners.example.csv"
    rows = parse_allow_list(path.read_text(), str(path))
    assert len(rows) == 3
