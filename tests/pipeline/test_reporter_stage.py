"""The reporter stage: periods closed on event time, duplicates dropped, commits held, restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darknet_iodef.bus.base import Message
from darknet_iodef.cli import main
from darknet_iodef.pipeline.reporter_stage import ReporterStage
from darknet_iodef.settings import load
from reporter.settings import ReporterSettings
from tests.pipeline.helpers import SAMPLE_DARKNET

PERIOD = 60  # one-minute reporting periods: the sample's five minutes make several


def _settings() -> ReporterSettings:
    return load(ReporterSettings, "reporter", None, {}, {"darknet": SAMPLE_DARKNET, "period_s": PERIOD})


def _messages(reference: Path) -> list[Message]:
    lines = (reference / "events.jsonl").read_bytes().splitlines(keepends=True)
    return [Message("events", 0, i, None, line) for i, line in enumerate(lines)]


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def chain(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report60") / "reports"
    assert (
        main(
            [
                "report",
                "--in",
                str(reference / "events.jsonl"),
                "--darknet",
                SAMPLE_DARKNET,
                "--period",
                str(PERIOD),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_periods_close_as_event_time_passes_them(tmp_path: Path, reference: Path, chain: Path) -> None:
    stage = ReporterStage(_settings(), tmp_path, grace_s=0)
    messages = _messages(reference)
    written_during = 0
    for m in messages:
        stage.process(m)
        written_during = max(written_during, stage.documents())
    assert 0 < written_during < len(_tree(chain)) // 2  # some periods were written before the end
    stage.finish()
    assert _tree(tmp_path) == _tree(chain)


def test_redelivered_events_change_nothing(tmp_path: Path, reference: Path, chain: Path) -> None:
    stage = ReporterStage(_settings(), tmp_path, grace_s=0)
    messages = _messages(reference)
    for m in messages + messages:
        stage.process(m)
    stage.finish()
    assert stage.duplicates == len(messages)
    assert _tree(tmp_path) == _tree(chain)


def test_commits_stop_before_unwritten_periods_and_a_restart_resumes(
    tmp_path: Path, reference: Path, chain: Path
) -> None:
    messages = _messages(reference)
    first = ReporterStage(_settings(), tmp_path, grace_s=0)
    half = len(messages) // 2
    for m in messages[:half]:
        first.process(m)
    held = first.held_offsets()[("events", 0)]
    assert 0 < held < half  # written periods are committed, the open one is not
    # crash: the second reporter reads again from the held offset, taking over the lists
    second = ReporterStage(_settings(), tmp_path, grace_s=0, resume=True)
    for m in messages[held:]:
        second.process(m)
    second.finish()
    assert _tree(tmp_path) == _tree(chain)


def test_a_late_revision_rewrites_its_closed_period(tmp_path: Path, reference: Path) -> None:
    messages = _messages(reference)
    stage = ReporterStage(_settings(), tmp_path, grace_s=0)
    for m in messages:
        stage.process(m)
    first = json.loads(messages[0].value)
    assert first["classification.type"] != "masquerade" and first["extra.revision"] == 1
    eid = first["extra.event_id"]
    docs = [p for p in tmp_path.rglob("*.xml") if f"{eid}#1".encode() in p.read_bytes()]
    assert len(docs) == 1  # its period was closed and written when later events came
    late = dict(first, **{"extra.revision": 9})
    stage.process(Message("events", 0, len(messages), None, json.dumps(late).encode()))
    stage.finish()
    body = docs[0].read_bytes()
    assert f"{eid}#9".encode() in body and f"{eid}#1".encode() not in body
