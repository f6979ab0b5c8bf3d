"""The Kafka bus: kafka-python clients behind the :mod:`darknet_iodef.bus.base` contract.

Theory of operation. Each class here is a thin adapter; the policy (when to
retry, how long to wait) is the runner's. What the adapters guarantee:

* **Nothing handed to ``send`` is dropped.** The producer keeps every record
  until the broker acknowledged it (acks=all). ``flush`` waits at most
  ``flush_timeout_s``; records not acknowledged by then stay queued and are
  re-sent by the next ``flush`` (kafka-python retries them on its own while it
  can; a record whose delivery failed is handed over again, and a client left
  in a fatal state is replaced).
* **Partitions are ours.** The partition of a keyed record is chosen with
  :func:`~darknet_iodef.bus.partitioner.partition_for`, as on the in-memory bus.
* **Topics are created when absent**, with the configured partition counts,
  never auto-created by the broker (``allow_auto_create_topics=False``: a
  broker would pick its own partition count). A broker that lost its topics
  (the memory-storage test broker after a restart) gets them back: a producer
  whose records are refused for an unknown topic, and a consumer that owns no
  partition, re-check and re-create them.
* **Errors become** :class:`~darknet_iodef.errors.TransientError` when the
  broker is away or busy; a commit refused because the group rebalanced
  returns False (the next owner re-reads those messages: at-least-once).
* **No busy loop in the clients**: reconnects back off from
  ``reconnect_backoff_ms`` to ``reconnect_backoff_max_ms``, and ``poll`` waits
  its full timeout even when the broker is away.

Connection counters (``connect_attempts``, ``polls``) let tests check that a
component waiting for a broker does not spin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from darknet_iodef.bus.base import Message, TopicPartition, next_offsets
from darknet_iodef.bus.partitioner import partition_for
from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.errors import ConfigError, TransientError

__all__ = ["KafkaBus", "KafkaBusConsumer", "KafkaBusProducer"]

log = logging.getLogger(__name__)

#: Kafka error code for "topic already exists" (a concurrent creator won the race)
_TOPIC_ALREADY_EXISTS = 36
#: CreateTopics errors that retrying cannot fix: the configuration must change
_CONFIG_ERRORS = {
    29: ("[bus] kafka", "the broker does not authorise this client to create topic {name}"),
    37: ("[bus] {count_setting}", "the broker refuses {partitions} partitions for topic {name}: {message}"),
    38: ("[bus] replication_factor", "the broker refuses replication factor {replication} for topic "
         "{name}: {message}"),
}


def _supported(cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The options this kafka-python version knows (older ones refuse unknown options)."""
    known = getattr(cls, "DEFAULT_CONFIG", None)
    return config if known is None else {k: v for k, v in config.items() if k in known}


def _transient(what: str, exc: BaseException) -> TransientError:
    return TransientError(f"Kafka {what} failed: {type(exc).__name__}: {exc}")


class KafkaBus:
    """Topic admin plus factories; the clients it makes share its settings."""

    def __init__(self, settings: BusSettings, client_id: str | None = None) -> None:
        if not settings.servers:
            raise ValueError("KafkaBus needs [bus] kafka = HOST:PORT")
        self.settings = settings
        self.client_id = client_id or settings.client_id
        self._declared = settings.topic_partitions()
        self._partitions: dict[str, int] = {}
        self._admin: Any = None
        # the admin client is not thread-safe; a producer and a consumer of this bus may
        # ensure topics from different threads
        self._admin_lock = threading.RLock()
        #: admin connections opened (a test checks that waiting for a broker does not spin)
        self.connect_attempts = 0

    def common(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap_servers": s.servers,
            "client_id": self.client_id,
            "request_timeout_ms": s.request_timeout_ms,
            "reconnect_backoff_ms": s.reconnect_backoff_ms,
            "reconnect_backoff_max_ms": s.reconnect_backoff_max_ms,
            # a client made while the broker is away gives up after this, not 30 s
            "bootstrap_timeout_ms": s.max_block_ms,
            "metadata_max_age_ms": s.metadata_max_age_ms,
        }

    # -- admin -------------------------------------------------------------------------------
    def _admin_client(self) -> Any:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        if self._admin is None:
            self.connect_attempts += 1
            try:
                self._admin = KafkaAdminClient(**_supported(KafkaAdminClient, self.common()))
            except (KafkaError, OSError) as exc:
                raise _transient("admin connection", exc) from None
        return self._admin

    def _drop_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # closing a broken client must not hide the first error
                log.debug("closing the Kafka admin client failed", exc_info=True)

    def ensure_topics(self, names: Sequence[str], partitions: int | None = None) -> None:
        with self._admin_lock:
            self._ensure_topics(names, partitions)

    def _ensure_topics(self, names: Sequence[str], partitions: int | None) -> None:
        from kafka.errors import KafkaError

        try:
            admin = self._admin_client()
            present = set(admin.list_topics())
            missing = [n for n in dict.fromkeys(names) if n not in present]
            if missing:
                spec = {
                    n: {
                        "num_partitions": partitions or self._declared.get(n) or 1,
                        "replication_factor": self.settings.replication_factor,
                    }
                    for n in missing
                }
                result = admin.create_topics(spec, raise_errors=False)
                for topic in result.get("topics", ()):
                    code = topic.get("error_code", 0)
                    if code in _CONFIG_ERRORS:
                        setting, reason = _CONFIG_ERRORS[code]
                        name = str(topic.get("name"))
                        counts = {self.settings.flows_topic: "flows_partitions",
                                  self.settings.events_topic: "events_partitions"}
                        count_setting = counts.get(name, "partitions")
                        fill = {"name": name, "partitions": spec.get(name, {}).get("num_partitions"),
                                "count_setting": count_setting,
                                "replication": self.settings.replication_factor,
                                "message": topic.get("error_message") or f"error {code}"}
                        raise ConfigError(setting.format(**fill), reason.format(**fill))
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        raise TransientError(
                            f"Kafka refused to create topic {topic.get('name')}: error {code} "
                            f"{topic.get('error_message') or ''}".rstrip()
                        )
                log.info("created Kafka topics %s", ", ".join(f"{n} ({spec[n]['num_partitions']} partitions)"
                                                             for n in missing))
            for n in names:
                if n not in self._partitions:
                    described = admin.describe_topics([n])
                    count = len(described[0]["partitions"]) if described else 0
                    if count:
                        self._partitions[n] = count
        except (KafkaError, OSError) as exc:
            self._drop_admin()
            raise _transient("topic admin", exc) from None
        except TransientError:
            self._drop_admin()
            raise

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            self.ensure_topics([topic])
        if topic not in self._partitions:
            raise TransientError(f"Kafka has no partitions for topic {topic} yet")
        return self._partitions[topic]

    def producer(self) -> KafkaBusProducer:
        return KafkaBusProducer(self)

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaBusConsumer:
        return KafkaBusConsumer(self, group, topics)

    def close(self) -> None:
        with self._admin_lock:
            self._drop_admin()


@dataclass(slots=True)
class _Pending:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    future: Any = None


class KafkaBusProducer:
    """acks=all producer that keeps every record until the broker acknowledged it."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus
        self._client: Any = None
        self._pending: list[_Pending] = []
        self._stalled = False  # a hand-over failed: queue further sends until the next flush

    def _producer(self) -> Any:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        if self._client is None:
            s = self._bus.settings
            self._bus.connect_attempts += 1
            try:
                self._client = KafkaProducer(**_supported(KafkaProducer, {
                    **self._bus.common(),
                    "acks": "all",
                    "linger_ms": s.linger_ms,
                    "max_block_ms": s.max_block_ms,
                    "enable_idempotence": s.idempotence,
                    "allow_auto_create_topics": False,
                    # one request in flight per connection keeps a partition's order through retries
                    "max_in_flight_requests_per_connection": 1 if not s.idempotence else 5,
                }))
            except (KafkaError, OSError) as exc:
                raise _transient("producer connection", exc) from None
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close(timeout=0)
            except Exception:
                log.debug("closing the Kafka producer failed", exc_info=True)

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        item = _Pending(topic, key, bytes(value), partition)
        self._pending.append(item)
        if not self._stalled:
            try:
                self._hand_over(item)
            except TransientError as exc:
                self._stalled = True
                log.warning("cannot hand records to Kafka now, keeping them queued: %s", exc)

    def _hand_over(self, item: _Pending) -> None:
        from kafka.errors import KafkaError

        client = self._producer()
        try:
            partition = item.partition
            if partition is None:
                # Create the topic first if absent (with its configured partitions), then
                # hash over the partitions the broker has now, as every producer sees them
                # (a broker may have created the topic its own way: tansu does, ignoring
                # allow_auto_create_topics=False), so all records of a key meet.
                self._bus.partitions(item.topic)
                partition = partition_for(item.key, len(client.partitions_for(item.topic)))
            item.future = client.send(item.topic, value=item.value, key=item.key, partition=partition)
        except (KafkaError, OSError, AssertionError) as exc:
            # AssertionError: kafka-python checks the partition against (stale) metadata
            item.future = None
            raise _transient("send", exc) from None

    def flush(self, timeout: float | None = None) -> None:
        from kafka.errors import KafkaError

        if not self._pending:
            return
        timeout = self._bus.settings.flush_timeout_s if timeout is None else timeout
        unknown_topics: set[str] = set()
        try:
            for item in self._pending:
                if item.future is None:
                    self._hand_over(item)
        except TransientError:
            self._stalled = True  # everything stays queued; sends queue without trying until then
            raise
        self._stalled = False
        try:
            self._producer().flush(timeout=timeout)
        except (KafkaError, OSError) as exc:
            # records wait for a partition leader; one reason is a broker that lost the topic
            self._recreate_topics({item.topic for item in self._pending})
            raise _transient(f"flush of {len(self._pending)} records", exc) from None
        kept: list[_Pending] = []
        first: BaseException | None = None
        fatal = False
        for item in self._pending:
            fut = item.future
            if fut is not None and fut.is_done and fut.succeeded():
                continue
            if fut is not None and fut.is_done:
                error = fut.exception
                first = first or error
                if type(error).__name__ in ("UnknownTopicOrPartitionError", "KafkaTimeoutError"):
                    unknown_topics.add(item.topic)
                if not getattr(error, "retriable", False):
                    fatal = True
                item.future = None
            kept.append(item)
        self._pending = kept
        if fatal:
            log.warning("Kafka producer failed with %s; starting a new one", first)
            self._drop_client()
        if unknown_topics:
            self._recreate_topics(unknown_topics)
        if kept:
            raise TransientError(f"Kafka did not acknowledge {len(kept)} records "
                                 f"({first or 'still in flight'}); they stay queued")

    def _recreate_topics(self, topics: set[str]) -> None:
        try:
            self._bus.ensure_topics(sorted(topics))
        except TransientError as exc:
            log.info("cannot check topics %s yet: %s", ", ".join(sorted(topics)), exc)

    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        if self._pending:
            log.warning("closing a Kafka producer with %d unacknowledged records", len(self._pending))
        self._pending.clear()
        self._drop_client()


class KafkaBusConsumer:
    """A group member with manual commits, reading from the earliest offset when none is committed."""

    def __init__(self, bus: KafkaBus, group: str, topics: Sequence[str]) -> None:
        self._bus = bus
        self.group = group
        self.topics = tuple(topics)
        self._client: Any = None
        self._last_topic_check = float("-inf")
        self._last_poll_empty = True
        self._topic_ids: dict[str, object] = {}
        #: topics found re-created under the same name (a broker that lost its storage)
        self.recreated_topics = 0
        #: calls to poll (a test checks that waiting for a broker does not spin)
        self.polls = 0

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        if self._client is None:
            s = self._bus.settings
            self._bus.ensure_topics(self.topics)
            self._bus.connect_attempts += 1
            try:
                client = KafkaConsumer(**_supported(KafkaConsumer, {
                    **self._bus.common(),
                    "group_id": self.group,
                    "enable_auto_commit": False,
                    "auto_offset_reset": "earliest",
                    "session_timeout_ms": s.session_timeout_ms,
                    "heartbeat_interval_ms": s.heartbeat_interval_ms,
                    "max_poll_interval_ms": s.max_poll_interval_ms,
                    "allow_auto_create_topics": False,
                }))
                client.subscribe(list(self.topics))
            except (KafkaError, OSError) as exc:
                raise _transient("consumer connection", exc) from None
            self._client = client
        return self._client

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        from kafka.errors import KafkaError

        self.polls += 1
        started = time.monotonic()
        try:
            client = self._consumer()
            batches = client.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
            owned = client.assignment()
        except (KafkaError, OSError) as exc:
            self._pause(started, timeout)
            raise _transient("poll", exc) from None
        except TransientError:
            self._pause(started, timeout)
            raise
        renewed = self._renewed_topics(client)
        out = [
            Message(r.topic, r.partition, r.offset, r.key, r.value if r.value is not None else b"",
                    r.timestamp if r.timestamp is not None else -1)
            for tp in sorted(batches, key=lambda t: (t.topic, t.partition))
            if tp.topic not in renewed
            for r in batches[tp]
        ]
        self._last_poll_empty = not out
        if not owned:
            self._check_topics()
        if not out:
            # kafka-python may return early without records (no coordinator, no leader):
            # an empty poll still takes its timeout, so no caller can spin on it
            self._pause(started, timeout)
        return out

    def _renewed_topics(self, client: Any) -> set[str]:
        """Topics whose identity changed since the last poll: read them again from the start.

        A topic deleted and created again under the same name (a broker that lost
        its storage) starts again at offset 0, but this member's positions still
        point where the old topic ended; until the group notices and rejoins, it
        would fetch from there and skip the new topic's first records. Kafka
        metadata carries a topic id (KIP-516) that changes in that case: the
        member then discards what it just fetched of the topic and goes back to
        its beginning (at-least-once: some records may be read twice).
        """
        cluster = getattr(client, "_cluster", None)
        topic_id = getattr(cluster, "topic_id", None)
        if cluster is None or topic_id is None:
            return set()
        renewed: set[str] = set()
        for topic in self.topics:
            now = topic_id(topic)
            if now is None:
                continue
            before = self._topic_ids.get(topic)
            self._topic_ids[topic] = now
            if before is not None and before != now:
                renewed.add(topic)
        if renewed:
            from kafka import TopicPartition as KTP

            cluster.request_update()  # the new topic may have another partition count: rebalance soon
            owned = [tp for tp in client.assignment() if tp.topic in renewed]
            log.warning("Kafka topics %s were created anew (the broker lost them); reading them again "
                        "from their start", ", ".join(sorted(renewed)))
            self.recreated_topics += len(renewed)
            if owned:
                client.seek_to_beginning(*[KTP(tp.topic, tp.partition) for tp in owned])
        return renewed

    @staticmethod
    def _pause(started: float, timeout: float) -> None:
        """A failed poll still takes its timeout, so a caller's loop cannot spin."""
        left = timeout - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)

    def _check_topics(self) -> None:
        """Owning nothing for a while may mean the broker lost the topics: re-create them."""
        now = time.monotonic()
        if now - self._last_topic_check < self._bus.settings.topic_check_interval_s:
            return
        self._last_topic_check = now
        try:
            self._bus.ensure_topics(self.topics)
        except TransientError as exc:
            log.info("cannot check topics %s yet: %s", ", ".join(self.topics), exc)

    def commit(self, done: Iterable[Message] | Mapping[TopicPartition, int]) -> bool:
        from kafka import TopicPartition as KTP
        from kafka.errors import (
            CommitFailedError,
            IllegalGenerationError,
            KafkaError,
            RebalanceInProgressError,
            UnknownMemberIdError,
        )
        from kafka.structs import OffsetAndMetadata

        offsets = dict(done) if isinstance(done, Mapping) else next_offsets(done)
        if not offsets:
            return True
        try:
            self._consumer().commit(
                {KTP(t, p): OffsetAndMetadata(off, "", -1) for (t, p), off in offsets.items()},
                timeout_ms=self._bus.settings.request_timeout_ms,
            )
        except (CommitFailedError, IllegalGenerationError, UnknownMemberIdError,
                RebalanceInProgressError) as exc:
            log.warning("commit of %d partitions refused after a rebalance (%s); their new owner "
                        "re-reads those messages", len(offsets), type(exc).__name__)
            return False
        except (KafkaError, OSError) as exc:
            raise _transient("commit", exc) from None
        return True

    def assignment(self) -> frozenset[TopicPartition]:
        if self._client is None:
            return frozenset()
        return frozenset((tp.topic, tp.partition) for tp in self._client.assignment())

    def lag(self) -> dict[TopicPartition, int]:
        from kafka.errors import KafkaError

        if self._client is None:
            return {}
        try:
            owned = list(self._client.assignment())
            if not owned:
                return {}
            ends = self._client.end_offsets(owned, timeout_ms=self._bus.settings.request_timeout_ms)
            return {
                (tp.topic, tp.partition): max(0, ends[tp] - self._client.position(
                    tp, timeout_ms=self._bus.settings.request_timeout_ms))
                for tp in owned
            }
        except (KafkaError, OSError) as exc:
            raise _transient("lag query", exc) from None

    def at_end(self) -> bool:
        # Both conditions: some brokers (tansu) report a partition's end as the base
        # offset of its last record batch + 1, so a position inside that batch would
        # look like the end; an empty poll proves the fetched data was all handed out.
        # And a member that has not joined its group yet owns nothing, which is not an end.
        return self._group_stable() and self._last_poll_empty and not any(self.lag().values())

    def _group_stable(self) -> bool:
        """Joined and not rebalancing (kafka-python's coordinator state; no public accessor)."""
        coordinator = getattr(self._client, "_coordinator", None)
        stable = getattr(coordinator, "stable", None)
        if self._client is None or stable is None:
            return self._client is not None and bool(self._client.assignment())
        return bool(stable())

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close(autocommit=False, timeout_ms=self._bus.settings.request_timeout_ms)
            except Exception:
                log.debug("closing the Kafka consumer failed", exc_info=True)
