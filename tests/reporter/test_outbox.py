"""The durable outbox: stored before sent, duplicates suppressed, backoff, give-up, restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reporter.outbox import BackoffPolicy, Outbox, Report, State, backoff_delay
from reporter.transport import Outcome, OutcomeKind

T0 = 1_700_000_000.0
OK = Outcome(OutcomeKind.DELIVERED, "", 200)
DOWN = Outcome(OutcomeKind.TRANSIENT, "connection refused")
BAD = Outcome(OutcomeKind.REJECTED, "HTTP 400 Bad Request: no XMLDocument", 400)


def report(n: int, recipient: str = "isp-a", channel: str = "rid") -> Report:
    return Report(f"inc-{n}", recipient, channel, "https://rid.isp-a.example:4590/",
                  f"<RID n='{n}'/>".encode(), kind="scan")


def test_backoff_is_exponential_capped_and_jittered_deterministically() -> None:
    p = BackoffPolicy(base_s=30, cap_s=3600, give_up_after_s=86400)
    delays = [backoff_delay(p, "inc-1", a) for a in range(1, 12)]
    nominal = [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    for d, n in zip(delays, nominal, strict=True):
        assert 0.5 * n <= d < n
    assert delays == [backoff_delay(p, "inc-1", a) for a in range(1, 12)]  # same inputs, same delay
    others = [backoff_delay(p, "inc-2", a) for a in range(1, 12)]
    assert others != delays  # reports queued together do not come back together
    assert backoff_delay(p, "inc-1", 10_000) < 3600  # no overflow for absurd attempt counts


def test_stored_before_sent_and_duplicates_suppressed(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        assert ob.add(report(1), T0) is True
        assert ob.add(report(1), T0 + 5) is False  # same IncidentID, recipient, channel
        assert ob.add(report(1, channel="email"), T0) is True  # another channel is another delivery
        assert ob.add(report(1, recipient="isp-b"), T0) is True
        assert ob.add_many([report(1), report(2), report(3), report(2)], T0) == (2, 2)
        assert ob.counts() == {State.QUEUED: 5, State.SENT: 0, State.FAILED: 0, State.REJECTED: 0}
        assert ob.queued_channels() == {"rid", "email"}
        due = ob.due(T0)
        assert [(i.report.incident_id, i.report.recipient, i.report.channel) for i in due] == [
            ("inc-1", "isp-a", "rid"), ("inc-1", "isp-a", "email"), ("inc-1", "isp-b", "rid"),
            ("inc-2", "isp-a", "rid"), ("inc-3", "isp-a", "rid")]
        assert due[0].report == report(1)
        first = due[0]
        assert (first.state, first.attempts, first.created, first.next_attempt) == (State.QUEUED, 0, T0, T0)


def test_delivered_rejected_and_retry_schedule(tmp_path: Path) -> None:
    p = BackoffPolicy(base_s=10, cap_s=100, give_up_after_s=1000)
    with Outbox(tmp_path / "o.sqlite", p) as ob:
        a, b, c = (ob.add(report(n), T0) for n in (1, 2, 3))
        assert a and b and c
        i1, i2, i3 = ob.due(T0)
        assert ob.record(i1.id, OK, T0 + 1) is State.SENT
        assert ob.record(i2.id, BAD, T0 + 1) is State.REJECTED
        assert ob.record(i3.id, DOWN, T0 + 1) is State.QUEUED
        # a settled report keeps its first verdict
        assert ob.record(i1.id, DOWN, T0 + 2) is State.SENT
        assert ob.due(T0 + 1) == []
        (retry,) = list(ob.items(State.QUEUED))
        assert retry.attempts == 1 and retry.last_error == "connection refused" and retry.last_status is None
        assert retry.next_attempt == T0 + 1 + backoff_delay(p, "inc-3", 1)
        assert ob.next_due() == retry.next_attempt
        (rej,) = list(ob.items(State.REJECTED))
        assert (rej.last_status, rej.last_error) == (400, "HTTP 400 Bad Request: no XMLDocument")
        (sent,) = list(ob.items(State.SENT))
        assert (sent.delivered, sent.attempts) == (T0 + 1, 1)
        with pytest.raises(KeyError):
            ob.record(999, OK, T0)


def test_gives_up_after_the_configured_time_and_can_be_requeued(tmp_path: Path) -> None:
    p = BackoffPolicy(base_s=10, cap_s=100, give_up_after_s=300)
    with Outbox(tmp_path / "o.sqlite", p) as ob:
        ob.add(report(1), T0)
        now, attempts = T0, 0
        while (due := ob.due(now)) or ob.next_due() is not None:
            for item in due:
                attempts += 1
                ob.record(item.id, DOWN, now)
            nxt = ob.next_due()
            if nxt is None:
                break
            now = nxt
            assert attempts < 50
        (failed,) = list(ob.items(State.FAILED))
        assert failed.attempts == attempts >= 4
        assert failed.last_attempt is not None and failed.last_attempt - T0 <= 300
        assert ob.counts()[State.FAILED] == 1
        assert ob.requeue(State.FAILED, now=T0 + 10_000) == 1
        assert [i.report.incident_id for i in ob.due(T0 + 10_000)] == ["inc-1"]


def test_restart_resumes_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path)
    ob.add_many([report(n) for n in range(5)], T0)
    first = ob.due(T0, limit=2)
    for item in first:
        ob.record(item.id, OK, T0)
    ob.close()  # the process stops (or dies: every add and record is committed at once)
    with Outbox(path) as again:
        assert again.counts()[State.SENT] == 2
        assert [i.report.incident_id for i in again.due(T0)] == ["inc-2", "inc-3", "inc-4"]
        assert again.add(report(0), T0) is False  # still a duplicate after the restart
    assert path.stat().st_mode & 0o777 == 0o600  # reports may be TLP:RED
    # the file is plain SQLite an operator can query
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state, COUNT(*) FROM reports GROUP BY state ORDER BY state").fetchall() == [
            ("queued", 3), ("sent", 2)]


def test_prune_drops_delivered_bodies_but_keeps_duplicate_suppression(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.add_many([report(1), report(2), report(3)], T0)
        i1, i2, _ = ob.due(T0)
        ob.record(i1.id, OK, T0 + 10)
        ob.record(i2.id, OK, T0 + 1000)
        assert ob.prune(delivered_before=T0 + 500) == 1
        assert ob.prune(delivered_before=T0 + 500) == 0
        bodies = {i.report.incident_id: i.report.body for i in ob.items()}
        assert bodies == {"inc-1": b"", "inc-2": report(2).body, "inc-3": report(3).body}
        assert ob.add(report(1), T0 + 2000) is False  # still recognised as sent
