"""A group member in its own process, for tests that kill it: ``python -m tests.bus.passthrough_member``.

Arguments: BOOTSTRAP GROUP IN OUT DEAD. Reads IN in GROUP, writes each value
upper-cased to OUT with the same key, forever (until killed).
"""

from __future__ import annotations

import sys

from darknet_iodef.bus import Message
from darknet_iodef.bus.kafka import KafkaBus
from darknet_iodef.runner import Backoff, Output, Runner, Stage
from tests.bus.conftest import kafka_settings


class Upper(Stage):
    name = "upper"

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, message: Message) -> list[Output]:
        return [Output(self.out, message.key, message.value.upper())]


def main(argv: list[str]) -> None:
    bootstrap, group, topic_in, topic_out, dead = argv
    bus = KafkaBus(kafka_settings(bootstrap), client_id=f"member-{group}")
    runner = Runner(Upper(topic_out), bus.consumer(group, [topic_in]), bus.producer(), dead_letter_topic=dead,
                    backoff=Backoff(0.2, 2.0), poll_timeout=0.5, max_records=10)
    runner.run()


if __name__ == "__main__":
    main(sys.argv[1:])
