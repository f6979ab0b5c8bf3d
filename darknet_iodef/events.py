"""Detection events: the record between aggregator and reporter.

Theory of operation: events are flat JSON objects with IntelMQ field names
(DOMAIN.md section 6), so a CSIRT's IntelMQ can take them from Kafka as they
are (its JSON parser reads this shape). Anything IntelMQ has no field for goes
under ``extra.``. One JSON object per line; keys sorted so the same event is
the same bytes (replaying a capture gives byte-identical output).

The three kinds (``classification.taxonomy`` / ``type`` / ``identifier``):

============  ========================  ===========  =========================
kind          taxonomy                  type         identifier
============  ========================  ===========  =========================
scan          information-gathering     scanner      ``scan`` or the tool name
backscatter   availability              ddos         ``backscatter``
spoofing      fraud                     masquerade   ``ip-spoofer``
============  ========================  ===========  =========================

For backscatter the *victim* is in ``source.ip``. A spoofing summary never
has a ``source.ip``: the accused is the ingress link (``extra.ingress``), not
an innocent address.

Required on every event: ``extra.event_id`` (stable: the same incident keeps
its id while it continues, and its ``extra.revision`` grows), ``time.source``
(start), ``time.observation`` (event time of this revision, never the wall
clock), ``feed.name``, the classification triple, ``extra.time_end``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from darknet_iodef.errors import RecordError

__all__ = [
    "KINDS",
    "KIND_BY_CLASSIFICATION",
    "REQUIRED_FIELDS",
    "decode_event",
    "encode_event",
    "event_kind",
    "iso_time",
    "parse_iso_time",
    "read_events",
]

KINDS: Final = {
    "scan": ("information-gathering", "scanner"),
    "backscatter": ("availability", "ddos"),
    "spoofing": ("fraud", "masquerade"),
}
KIND_BY_CLASSIFICATION: Final = {v: k for k, v in KINDS.items()}

REQUIRED_FIELDS: Final = (
    "extra.event_id",
    "extra.time_end",
    "feed.name",
    "time.source",
    "time.observation",
    "classification.taxonomy",
    "classification.type",
    "classification.identifier",
)
#: largest event line accepted from a file or message
MAX_EVENT_BYTES = 1 << 20


def iso_time(ns: int) -> str:
    """Event time in ns -> IntelMQ's ISO 8601 UTC form, to the microsecond."""
    t = _dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=_dt.UTC)
    t = t.replace(microsecond=(ns % 1_000_000_000) // 1000)
    return t.isoformat()


def parse_iso_time(text: str) -> int:
    """ISO 8601 (with offset) -> ns since the epoch; ValueError if not one."""
    t = _dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def event_kind(event: Mapping[str, Any]) -> str:
    """``scan``, ``backscatter`` or ``spoofing`` (KeyError if none)."""
    return KIND_BY_CLASSIFICATION[(event["classification.taxonomy"], event["classification.type"])]


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One event -> one JSON line (sorted keys, no spaces, ends with newline)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode_event(data: bytes | str, source: str = "event", position: str = "") -> dict[str, Any]:
    """Parse and check one event; a poison event raises RecordError."""
    if len(data) > MAX_EVENT_BYTES:
        raise RecordError(source, position, f"event of {len(data)} bytes exceeds the limit")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(source, position, f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RecordError(source, position, "event is not a JSON object")
    for name in REQUIRED_FIELDS:
        if name not in obj:
            raise RecordError(source, position, f"field {name} missing")
    for name in ("time.source", "time.observation", "extra.time_end"):
        try:
            parse_iso_time(str(obj[name]))
        except ValueError:
            raise RecordError(source, position, f"field {name}: {obj[name]!r} is not an ISO time") from None
    try:
        event_kind(obj)
    except (KeyError, TypeError):
        raise RecordError(
            source,
            position,
            "field classification.taxonomy/type: "
            f"{obj.get('classification.taxonomy')!r}/{obj.get('classification.type')!r} is not a known kind",
        ) from None
    return obj


def read_events(lines: Iterator[bytes], source: str) -> Iterator[dict[str, Any] | RecordError]:
    """Events of a JSON-lines stream; a bad line yields its RecordError (to count and skip)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield decode_event(line, source, f"line {number}")
        except RecordError as exc:
            yield exc
