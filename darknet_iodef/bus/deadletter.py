"""Dead letters: a message that could not be processed, wrapped with where it came from and why.

Format (JSON object, one per dead-letter record; the record's key is the
original key so a dead letter stays in its source's partition order)::

    {"format": "darknet-iodef.dead-letter.v1",
     "topic": "darknet.flows", "partition": 3, "offset": 1207,
     "stage": "aggregator", "error": "RecordError",
     "reason": "darknet.flows[3]@1207: offset 0: bad magic b'XXXX'",
     "key": "<base64>", "value": "<base64>"}

JSON rather than Kafka headers, so the reason survives any tool that copies
the value (kafkacat, IntelMQ's collector, a file dump), and the original bytes
are kept exactly (base64) for a later replay. No wall-clock time is added:
re-running the same input dead-letters the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from darknet_iodef.bus.base import Message
from darknet_iodef.errors import RecordError

__all__ = ["FORMAT", "DeadLetter", "decode_dead_letter", "encode_dead_letter"]

FORMAT = "darknet-iodef.dead-letter.v1"
_FIELDS = ("topic", "partition", "offset", "stage", "error", "reason", "key", "value")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A decoded dead letter: the original message and the reason it was refused."""

    original: Message
    stage: str
    error: str
    reason: str


def encode_dead_letter(message: Message, stage: str, error: BaseException) -> bytes:
    """The dead-letter record value for ``message`` refused by ``stage`` with ``error``."""
    line = error.line() if hasattr(error, "line") else str(error)
    doc = {
        "format": FORMAT,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "stage": stage,
        "error": type(error).__name__,
        "reason": f"{message.where}: {line}" if not line.startswith(message.where) else line,
        "key": None if message.key is None else base64.b64encode(message.key).decode("ascii"),
        "value": base64.b64encode(message.value).decode("ascii"),
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_dead_letter(value: bytes, source: str = "dead letter") -> DeadLetter:
    """Parse a dead-letter record; a malformed one raises :class:`RecordError`."""
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(source, "value", f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RecordError(source, "field format", f"expected {FORMAT!r}")
    for name in _FIELDS:
        if name not in doc:
            raise RecordError(source, f"field {name}", "missing")
    try:
        key = None if doc["key"] is None else base64.b64decode(doc["key"], validate=True)
        original = Message(str(doc["topic"]), int(doc["partition"]), int(doc["offset"]), key,
                           base64.b64decode(doc["value"], validate=True))
        return DeadLetter(original, str(doc["stage"]), str(doc["error"]), str(doc["reason"]))
    except (TypeError, ValueError, binascii.Error) as exc:
        raise RecordError(source, "value", f"malformed dead letter: {exc}") from None
