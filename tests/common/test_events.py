"""Event encoding and validation (the aggregator -> reporter contract)."""

from __future__ import annotations

import pytest

from darknet_iodef.errors import RecordError
from darknet_iodef.events import (
    decode_event,
    encode_event,
    event_kind,
    iso_time,
    parse_iso_time,
    read_events,
)

EVENT = {
    "extra.event_id": "scan-5f1d",
    "extra.time_end": "2024-03-01T00:05:00+00:00",
    "feed.name": "darknet-iodef",
    "time.source": "2024-03-01T00:00:00.250000+00:00",
    "time.observation": "2024-03-01T00:06:00+00:00",
    "classification.taxonomy": "information-gathering",
    "classification.type": "scanner",
    "classification.identifier": "zmap",
    "source.ip": "192.0.2.7",
}


def test_iso_time_round_trip_microseconds() -> None:
    ns = 1_709_251_200_250_000_123
    assert iso_time(ns) == "2024-03-01T00:00:00.250000+00:00"
    assert parse_iso_time(iso_time(ns)) == ns - 123


def test_encoding_is_byte_stable_regardless_of_key_order() -> None:
    reordered = dict(reversed(list(EVENT.items())))
    assert encode_event(EVENT) == encode_event(reordered)
    assert encode_event(EVENT).endswith(b"\n")
    assert decode_event(encode_event(EVENT)) == EVENT
    assert event_kind(EVENT) == "scan"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"feed.name": None}, "field feed.name missing"),
        ({"time.source": "yesterday"}, "field time.source: 'yesterday' is not an ISO time"),
        ({"time.source": "2024-03-01T00:00:00"}, "is not an ISO time"),
        ({"classification.type": "phishing"}, "is not a known kind"),
    ],
)
def test_bad_events_name_the_field(change: dict, reason: str) -> None:
    ev = dict(EVENT)
    for k, v in change.items():
        if v is None:
            del ev[k]
        else:
            ev[k] = v
    with pytest.raises(RecordError) as exc:
        decode_event(encode_event(ev), "events.jsonl", "line 3")
    assert exc.value.line().startswith("events.jsonl: line 3: ")
    assert reason in exc.value.reason


def test_stream_yields_errors_in_place_and_keeps_going() -> None:
    lines = [encode_event(EVENT), b"{not json\n", b"\n", b"[1]\n", encode_event(EVENT)]
    out = list(read_events(iter(lines), "e.jsonl"))
    assert [type(x).__name__ for x in out] == ["dict", "RecordError", "RecordError", "dict"]
    assert str(out[1]).startswith("e.jsonl: line 2: not JSON")
    assert str(out[2]) == "e.jsonl: line 4: event is not a JSON object"
