"""Options of the message bus (the ``[bus]`` section), each declared once.

An empty ``kafka`` means the in-memory bus: the whole pipeline in one
process. The consumer-group timings default to what makes a group form in
about 3 s (kafka-python's own defaults take about 23 s); the backoff bounds
are the runner's retry policy for a broker that is away.
"""

from __future__ import annotations

from dataclasses import dataclass

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = ["BusSettings"]


@dataclass(frozen=True, slots=True)
class BusSettings:
    kafka: str = setting("", "Kafka bootstrap servers HOST:PORT[,HOST:PORT...]; empty = in-memory bus")
    client_id: str = setting("darknet-iodef", "client id sent to the broker (shows in broker logs)")
    flows_topic: str = setting("darknet.flows", "topic of flow summary batches (sensor -> aggregator)")
    flows_partitions: int = setting(8, "partitions of the flows topic (upper bound on aggregators)")
    events_topic: str = setting("darknet.events", "topic of detection events (aggregator -> reporter)")
    events_partitions: int = setting(4, "partitions of the events topic (upper bound on reporters)")
    dead_letter_topic: str = setting("darknet.deadletter", "topic for messages that cannot be decoded")
    replication_factor: int = setting(1, "replication factor of topics this program creates")
    aggregator_group: str = setting("darknet-aggregator", "consumer group of the aggregators")
    reporter_group: str = setting("darknet-reporter", "consumer group of the reporters")
    session_timeout_ms: int = setting(6000, "consumer group session timeout (ms)")
    heartbeat_interval_ms: int = setting(1000, "consumer group heartbeat interval (ms)")
    max_poll_interval_ms: int = setting(300000, "longest time between polls before a member is evicted (ms)")
    request_timeout_ms: int = setting(10000, "broker request timeout (ms)")
    max_block_ms: int = setting(5000, "longest a send waits for topic metadata (ms)")
    metadata_max_age_ms: int = setting(
        30000, "refresh topic metadata at least this often, to notice new partitions (ms)"
    )
    linger_ms: int = setting(5, "producer batching delay (ms)")
    flush_timeout_s: float = setting(10.0, "longest a flush waits for acknowledgements before retrying")
    poll_timeout_s: float = setting(1.0, "longest a poll waits for a message")
    max_poll_records: int = setting(500, "messages handed to a stage per poll")
    reconnect_backoff_ms: int = setting(100, "first reconnect delay after a broker connection fails (ms)")
    reconnect_backoff_max_ms: int = setting(5000, "longest reconnect delay (ms)")
    retry_backoff_s: float = setting(0.2, "first delay of the runner's retry backoff (s)")
    retry_backoff_max_s: float = setting(10.0, "longest delay of the runner's retry backoff (s)")
    topic_check_interval_s: float = setting(
        5.0, "while a consumer owns no partition, check this often that its topics exist (s)"
    )
    idempotence: bool = setting(False, "idempotent producer (needs broker support; acks=all is always on)")

    def __post_init__(self) -> None:
        for name in ("flows_partitions", "events_partitions", "replication_factor", "max_poll_records"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[bus] {name}", f"must be at least 1, got {getattr(self, name)}")
        names = ("flows_topic", "events_topic", "dead_letter_topic", "aggregator_group", "reporter_group")
        for name in names:
            value = getattr(self, name)
            if not value or len(value) > 249 or not all(c.isalnum() or c in "._-" for c in value):
                raise ConfigError(f"[bus] {name}", f"{value!r} is not a valid topic or group name "
                                  "(1-249 of letters, digits, '.', '_', '-')")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError("[bus] heartbeat_interval_ms",
                              "must be at most a third of session_timeout_ms")
        for name in ("session_timeout_ms", "max_poll_interval_ms", "request_timeout_ms", "max_block_ms",
                     "metadata_max_age_ms",
                     "reconnect_backoff_ms", "reconnect_backoff_max_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[bus] {name}", "must be positive")
        if self.linger_ms < 0:
            raise ConfigError("[bus] linger_ms", "must not be negative")
        for name in ("flush_timeout_s", "poll_timeout_s", "retry_backoff_s", "retry_backoff_max_s",
                     "topic_check_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[bus] {name}", "must be positive")
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ConfigError("[bus] retry_backoff_max_s", "must not be below retry_backoff_s")
        for server in (s.strip() for s in self.kafka.split(",") if s.strip()):
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("[bus] kafka", f"{server!r} is not HOST:PORT")

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.kafka.split(",") if s.strip()]

    def topic_partitions(self) -> dict[str, int]:
        """Topic name -> partition count for the topics this program creates."""
        return {
            self.flows_topic: self.flows_partitions,
            self.events_topic: self.events_partitions,
            self.dead_letter_topic: 1,
        }
