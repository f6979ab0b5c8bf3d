"""Dead letters keep the original bytes and say where they came from and why."""

from __future__ import annotations

import json

import pytest

from darknet_iodef.bus import Message, decode_dead_letter, encode_dead_letter
from darknet_iodef.errors import RecordError


def test_round_trip_keeps_every_byte_and_the_reason() -> None:
    msg = Message("darknet.flows", 3, 1207, b"\x00\x01key", b"\xffDKFT garbage\x00")
    err = RecordError(msg.where, "offset 0", "bad magic")
    value = encode_dead_letter(msg, "aggregator", err)
    doc = json.loads(value)
    assert doc == {
        "format": "darknet-iodef.dead-letter.v1",
        "topic": "darknet.flows",
        "partition": 3,
        "offset": 1207,
        "stage": "aggregator",
        "error": "RecordError",
        "reason": "darknet.flows[3]@1207: offset 0: bad magic",
        "key": "AAFrZXk=",
        "value": "/0RLRlQgZ2FyYmFnZQA=",
    }
    letter = decode_dead_letter(value)
    assert letter.original == Message("darknet.flows", 3, 1207, b"\x00\x01key", b"\xffDKFT garbage\x00")
    assert (letter.stage, letter.error, letter.reason) == (
        "aggregator", "RecordError", "darknet.flows[3]@1207: offset 0: bad magic")
    # the reason gets the message's position when the error did not say it
    other = decode_dead_letter(encode_dead_letter(msg, "reporter", ValueError("boom")))
    assert other.reason == "darknet.flows[3]@1207: boom"
    assert decode_dead_letter(encode_dead_letter(Message("t", 0, 0, None, b""), "s", ValueError("x"))
                              ).original.key is None


@pytest.mark.parametrize(("value", "position"), [
    (b"\xff", "value"),
    (b"[1]", "field format"),
    (b'{"format": "darknet-iodef.dead-letter.v1"}', "field topic"),
    (b'{"format": "darknet-iodef.dead-letter.v1", "topic": "t", "partition": "x", "offset": 0, '
     b'"stage": "s", "error": "e", "reason": "r", "key": null, "value": ""}', "value"),
    (b'{"format": "darknet-iodef.dead-letter.v1", "topic": "t", "partition": 0, "offset": 0, '
     b'"stage": "s", "error": "e", "reason": "r", "key": null, "value": "!!"}', "value"),
])
def test_malformed_dead_letters_raise_record_error(value: bytes, position: str) -> None:
    with pytest.raises(RecordError) as err:
        decode_dead_letter(value, "dead[0]@5")
    assert (err.value.source, err.value.position) == ("dead[0]@5", position)
