"""Topic creation refusals that retrying cannot fix become configuration errors naming the setting.

tansu accepts any partition count and replication factor, so these answers of a
real Kafka cluster are played by a stand-in admin client (the CreateTopics
response shape of kafka-python).
"""

from __future__ import annotations

from typing import Any

import pytest

from darknet_iodef.bus import BusSettings
from darknet_iodef.bus.kafka import KafkaBus
from darknet_iodef.errors import ConfigError, TransientError


class RefusingAdmin:
    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message

    def list_topics(self) -> list[str]:
        return []

    def create_topics(self, spec: dict[str, Any], raise_errors: bool) -> dict[str, Any]:
        assert raise_errors is False
        return {"topics": [{"name": n, "error_code": self.code, "error_message": self.message} for n in spec]}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("code", "message", "expected"), [
    (38, "Replication factor: 3 larger than available brokers: 1.",
     "setting [bus] replication_factor: the broker refuses replication factor 3 for topic darknet.flows: "
     "Replication factor: 3 larger than available brokers: 1."),
    (37, "Number of partitions is above the limit.",
     "setting [bus] flows_partitions: the broker refuses 8 partitions for topic darknet.flows: "
     "Number of partitions is above the limit."),
    (29, None,
     "setting [bus] kafka: the broker does not authorise this client to create topic darknet.flows"),
])
def test_refusals_name_the_setting(code: int, message: str | None, expected: str) -> None:
    bus = KafkaBus(BusSettings(kafka="127.0.0.1:9", replication_factor=3))
    bus._admin = RefusingAdmin(code, message or "")
    with pytest.raises(ConfigError) as err:
        bus.ensure_topics(["darknet.flows"])
    assert str(err.value) == expected


def test_other_refusals_are_transient() -> None:
    bus = KafkaBus(BusSettings(kafka="127.0.0.1:9"))
    bus._admin = RefusingAdmin(41, "This is not the correct controller for this cluster.")
    with pytest.raises(TransientError) as err:
        bus.ensure_topics(["darknet.events"])
    assert str(err.value) == ("Kafka refused to create topic darknet.events: error 41 "
                              "This is not the correct controller for this cluster.")
