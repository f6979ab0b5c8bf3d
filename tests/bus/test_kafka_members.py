"""Group members that die, and producers that start before the broker: nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from darknet_iodef.bus import Consumer, Message, partition_for
from darknet_iodef.bus.kafka import KafkaBus
from darknet_iodef.errors import TransientError
from darknet_iodef.runner import Backoff, Runner
from tests.bus.conftest import kafka_settings
from tests.bus.passthrough_member import Upper
from tests.bus.tansu import TansuBroker, free_port

pytestmark = pytest.mark.kafka


def test_a_member_killed_mid_stream_loses_nothing(kafka_broker: TansuBroker, repo_root: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    topic_in, topic_out, dead, group = f"in-{tag}", f"out-{tag}", f"dead-{tag}", f"g-{tag}"
    bus = KafkaBus(kafka_settings(kafka_broker.bootstrap))
    bus.ensure_topics([topic_in, topic_out], 4)
    bus.ensure_topics([dead], 1)
    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.bus.passthrough_member", kafka_broker.bootstrap, group, topic_in,
         topic_out, dead],
        cwd=repo_root, env={**os.environ, "PYTHONPATH": str(repo_root)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    survivor = Runner(Upper(topic_out), bus.consumer(group, [topic_in]), bus.producer(),
                      dead_letter_topic=dead, backoff=Backoff(0.2, 2.0), poll_timeout=0.5, max_records=10,
                      stop=stop)
    thread = threading.Thread(target=survivor.run, daemon=True)
    verify = bus.consumer(f"verify-{tag}", [topic_out])
    seen: list[bytes] = []
    producer = bus.producer()

    def seen_messages(consumer: Consumer) -> list[Message]:
        got = consumer.poll(200, 0.5)
        seen.extend(m.value for m in got)
        return got

    try:
        thread.start()
        deadline = time.monotonic() + 40
        while len(survivor.consumer.assignment()) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # both members in the group: two partitions each
        assert len(survivor.consumer.assignment()) == 2
        for i in range(400):
            producer.send(topic_in, b"src-%d" % (i % 37), b"rec-%03d" % i)
            if i % 50 == 49:
                producer.flush()
                time.sleep(0.2)
            if i == 199:
                # the victim is mid-stream: it has output of its own partitions, and more to do
                mine = {p for _, p in survivor.consumer.assignment()}
                while not any(m.partition not in mine for m in seen_messages(verify)):
                    pass
                victim.send_signal(signal.SIGKILL)  # no LeaveGroup, no commit: the session times out
        producer.flush()
        deadline = time.monotonic() + 60
        while len(set(seen)) < 400 and time.monotonic() < deadline:
            seen_messages(verify)
    finally:
        stop.set()
        thread.join(timeout=20)
        victim.kill()
        victim.wait()
        verify.close()
        survivor.consumer.close()
        bus.close()
    assert set(seen) >= {b"REC-%03d" % i for i in range(400)}  # nothing lost (duplicates allowed)
    # the survivor took over the victim's partitions: it handled more than its own half
    per_partition = [partition_for(b"src-%d" % (i % 37), 4) for i in range(400)]
    assert survivor.stats.consumed > max(sum(p in own for p in per_partition) for own in ({0, 1}, {2, 3}))


def test_a_producer_started_before_the_broker_delivers_once_it_is_up(
    tansu_binary: Path, tmp_path: Path
) -> None:
    port = free_port()
    bus = KafkaBus(kafka_settings(f"127.0.0.1:{port}"))
    producer = bus.producer()
    for i in range(5):
        producer.send("early", b"k", b"%d" % i)  # no broker yet: queued, send does not block
    assert producer.pending() == 5
    with pytest.raises(TransientError):
        producer.flush()
    assert producer.pending() == 5
    broker = TansuBroker(tansu_binary, port, tmp_path / "tansu.log").start()
    try:
        attempts = 0
        backoff = Backoff(0.2, 2.0)
        while True:
            attempts += 1
            try:
                producer.flush()
                break
            except TransientError:
                assert attempts < 20
                time.sleep(backoff.next())
        assert producer.pending() == 0
        consumer = bus.consumer("early-readers", ["early"])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            got.extend(m.value for m in consumer.poll(10, 0.5))
        consumer.close()
        assert got == [b"0", b"1", b"2", b"3", b"4"]  # one key, one partition: in order, once
    finally:
        bus.close()
        broker.stop()
