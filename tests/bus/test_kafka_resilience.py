"""A broker that goes away and comes back: nothing lost, no crash, no busy loop.

The issue asks that a one-minute outage be survived; the outage here lasts
``DARKNET_IODEF_TEST_OUTAGE_S`` seconds (default 12, to keep the suite short;
set 60 to run the full minute). The broker is tansu with memory storage, so it
comes back empty -- no topics, no groups, no committed offsets -- and the
clients must re-create the topics and rejoin on their own.

What the memory broker loses by design (records it held when it was killed)
is not ours to keep, so the producer pauses and the pipeline drains before
the broker is stopped; from then on the producer keeps sending through the
outage and every one of its records must come out of the pipeline.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from darknet_iodef.bus import Message
from darknet_iodef.bus.kafka import KafkaBus
from darknet_iodef.runner import Backoff, Output, Publisher, Runner, Stage
from tests.bus.conftest import kafka_settings
from tests.bus.tansu import TansuBroker

pytestmark = pytest.mark.kafka

OUTAGE_S = float(os.environ.get("DARKNET_IODEF_TEST_OUTAGE_S", "12"))
TOTAL = 60  # records sent, one every 0.25 s: about a third before, during and after the outage


class Upper(Stage):
    name = "upper"

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, message: Message) -> list[Output]:
        return [Output(self.out, message.key, message.value.upper())]


class Sender(threading.Thread):
    """Sends ``TOTAL`` records through a :class:`Publisher` (flush each, back off on failure)."""

    def __init__(self, bus: KafkaBus, topic: str) -> None:
        super().__init__(daemon=True)
        self.bus, self.topic = bus, topic
        self.go = threading.Event()
        self.go.set()
        self.sent = 0
        self.publisher = Publisher(bus.producer(), name="sender", backoff=Backoff(0.2, 2.0))
        self.error: BaseException | None = None

    @property
    def flush_attempts(self) -> int:
        return self.sent + self.publisher.retries

    def run(self) -> None:
        try:
            for i in range(TOTAL):
                self.go.wait()
                self.publisher.publish([Output(self.topic, b"src-%d" % (i % 7), b"rec-%03d" % i)])
                self.sent = i + 1
                time.sleep(0.25)
            self.publisher.producer.close()
        except BaseException as exc:  # reported by the test thread
            self.error = exc


def test_pipeline_survives_a_broker_outage(tansu_binary: Path, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    topic_in, topic_out, dead = f"in-{tag}", f"out-{tag}", f"dead-{tag}"
    broker = TansuBroker(tansu_binary, log_path=tmp_path / "tansu.log").start()
    settings = kafka_settings(broker.bootstrap, flows_topic=topic_in, flows_partitions=2,
                              events_topic=topic_out, events_partitions=2, dead_letter_topic=dead)
    buses = [KafkaBus(settings, client_id=name) for name in ("sender", "stage", "verify")]
    sender_bus, stage_bus, verify_bus = buses
    stage_bus.ensure_topics([topic_in, topic_out, dead])
    stop = threading.Event()
    runner = Runner(Upper(topic_out), stage_bus.consumer(f"stage-{tag}", [topic_in]), stage_bus.producer(),
                    dead_letter_topic=dead, backoff=Backoff(0.2, 2.0), poll_timeout=0.5, stop=stop)
    stage_thread = threading.Thread(target=runner.run, daemon=True)
    verify = verify_bus.consumer(f"verify-{tag}", [topic_out])
    sender = Sender(sender_bus, topic_in)
    seen: list[bytes] = []

    def read_until(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(set(seen)) < count and time.monotonic() < deadline:
            seen.extend(m.value for m in verify.poll(100, 0.5))

    try:
        stage_thread.start()
        sender.start()
        # before: the pipeline flows; then pause the sender and drain (see the module doc)
        read_until(12, 60)
        sender.go.clear()
        time.sleep(0.5)
        read_until(sender.sent, 30)
        assert len(set(seen)) == sender.sent >= 12
        before = (runner.stats.polls, runner.consumer.polls, sender.flush_attempts,  # type: ignore[attr-defined]
                  sum(b.connect_attempts for b in buses))
        broker.stop()
        sender.go.set()  # keeps sending while the broker is away
        time.sleep(OUTAGE_S)
        during = (runner.stats.polls, runner.consumer.polls, sender.flush_attempts,  # type: ignore[attr-defined]
                  sum(b.connect_attempts for b in buses))
        sent_during = sender.sent
        broker.start()
        sender.join(timeout=120)
        assert sender.error is None and sender.sent == TOTAL
        read_until(TOTAL, 90)
        # the broker came back empty: the topics exist again
        check = KafkaBus(settings, client_id="check")
        described = check._admin_client().describe_topics([topic_in, topic_out])
        check.close()
        recreated = {t["name"]: len(t["partitions"]) > 0 for t in described}
    finally:
        stop.set()
        stage_thread.join(timeout=30)
        verify.close()
        runner.consumer.close()
        for b in buses:
            b.close()
        broker.stop()

    assert set(seen) == {b"REC-%03d" % i for i in range(TOTAL)}  # nothing lost
    # (created by our clients with the configured 2 partitions, or -- when a client's metadata
    # request reaches it first -- by tansu itself with its own default: tansu auto-creates topics
    # named in Metadata requests even with allow_auto_topic_creation=False; Kafka does not)
    assert recreated == {topic_in: True, topic_out: True}
    assert broker.starts == 2
    assert stage_thread.is_alive() is False and sender.publisher.retries >= 1
    # The sender's first record of the outage could not be handed over; it stays in the producer:
    assert sent_during < TOTAL
    # No busy spin while the broker was away: every poll waits its 0.5 s timeout (or a
    # backoff), every flush its timeout or a backoff, and clients are not re-made in a loop.
    polls, consumer_polls, flushes, connects = (d - b for d, b in zip(during, before, strict=True))
    assert polls <= OUTAGE_S / 0.5 + 4, polls
    assert consumer_polls <= OUTAGE_S / 0.5 + 4, consumer_polls
    assert flushes <= OUTAGE_S / 1.0 + 3, flushes
    # a consumer owning no partition re-makes its admin client at most once per topic check,
    # which takes at least the 2 s bootstrap timeout: two consumers, plus one client each
    assert connects <= 2 * OUTAGE_S / 2.0 + 6, connects
