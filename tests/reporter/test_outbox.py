"""The durable outbox: stored before sent, duplicates suppressed, backoff, give-up, restart."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from darknet_iodef.errors import ConfigError
from reporter.documents import build_documents
from reporter.outbox import (
    SCHEMA_VERSION,
    AddResult,
    BackoffPolicy,
    Outbox,
    Report,
    State,
    backoff_delay,
    content_digest,
)
from reporter.rid import SigningIdentity, build_report
from reporter.settings import ReporterSettings
from reporter.transport import Outcome, OutcomeKind

from .conftest import EVENTS, scan_event
from .pki import Pki

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
        assert ob.add_many([report(1), report(2), report(3), report(2)], T0) [:2] == (2, 2)
        assert ob.counts() == {State.QUEUED: 5, State.SENT: 0, State.FAILED: 0, State.REJECTED: 0,
                               State.SUPERSEDED: 0}
        assert ob.queued_channels() == {"rid", "email"}
        due = ob.due(T0)
        assert [(i.report.incident_id, i.report.recipient, i.report.channel) for i in due] == [
            ("inc-1", "isp-a", "rid"), ("inc-1", "isp-a", "email"), ("inc-1", "isp-b", "rid"),
            ("inc-2", "isp-a", "rid"), ("inc-3", "isp-a", "rid")]
        assert due[0].report == replace(report(1), digest=content_digest(report(1).body))
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


def version(rev: int, text: str = "", incident: str = "inc-1") -> Report:
    """One version of incident ``incident``: content ``text``, report revision ``rev``."""
    return Report(incident, "isp-a", "rid", "https://rid.isp-a.example:4590/",
                  f"<RID v='{text or rev}'/>".encode(), kind="scan", revision=rev)


def test_versions_update_supersede_and_keep_history(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        assert ob.add_many([version(1)], T0) == AddResult(1, 0)
        assert ob.add_many([version(1)], T0 + 1) == AddResult(0, 1)  # the very same document: suppressed
        # late information before v1 was accepted: v2 replaces it, v1 is never sent
        assert ob.add_many([version(2)], T0 + 2) == AddResult(1, 0, updates=1, superseded=1)
        (due,) = ob.due(T0 + 2)
        assert due.report.revision == 2
        assert not due.update  # v1 never reached the recipient: v2 is their first
        (old,) = list(ob.items(State.SUPERSEDED))
        assert (old.report.revision, old.superseded_by) == (1, due.id)
        assert old.last_error == "superseded by revision 2"
        assert ob.record(old.id, DOWN, T0 + 3) is State.SUPERSEDED  # a late verdict does not revive it
        assert ob.record(due.id, OK, T0 + 3) is State.SENT
        # more late information after v2 was sent: an update, queued
        assert ob.add_many([version(3)], T0 + 4) == AddResult(1, 0, updates=1)
        (v3,) = ob.due(T0 + 4)
        assert v3.update  # the recipient has v2: v3 is sent as an update
        assert ob.record(v3.id, BAD, T0 + 5) is State.REJECTED
        # a rerun over less data (older than v2, which the peer accepted): kept as history, not sent
        assert ob.add_many([version(1, "other")], T0 + 6) == AddResult(0, 0, outdated=1)
        assert ob.due(T0 + 6) == []
        assert ob.add_many([version(1), version(2), version(3)], T0 + 7) == AddResult(0, 3)
        v4 = version(4)
        assert ob.add(v4, T0 + 8) is True
        assert ob.add(v4, T0 + 8) is False
        states = [(i.report.revision, i.state) for i in ob.items()]
        assert states == [(4, State.QUEUED), (1, State.SUPERSEDED), (3, State.REJECTED), (2, State.SENT),
                          (1, State.SUPERSEDED)]
        # other incidents, recipients and channels are other deliveries, as before
        others = [version(1, incident="inc-9"), replace(version(1), channel="email")]
        assert ob.add_many(others, T0).added == 2


def test_an_equal_revision_with_other_content_goes_by_arrival(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.add(version(5, "a"), T0)
        assert ob.add_many([version(5, "b")], T0 + 1) == AddResult(1, 0, updates=1, superseded=1)
        assert [i.report.body for i in ob.due(T0 + 1)] == [version(5, "b").body]


def test_superseded_while_on_its_way_and_requeue_of_old_versions(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.add(version(1), T0)
        (v1,) = ob.due(T0)
        ob.add(version(2), T0 + 1)  # another run adds v2 while v1 is being sent
        assert ob.record(v1.id, OK, T0 + 2) is State.SENT  # it did arrive: history says so
        (v2,) = ob.due(T0 + 2)
        for _ in range(60):
            if ob.record(v2.id, DOWN, T0 + 10 * 86400) is State.FAILED:
                break
        ob.add(version(3), T0 + 20 * 86400)
        (v3,) = ob.due(T0 + 20 * 86400)
        assert ob.record(v3.id, OK, T0 + 20 * 86400) is State.SENT
        # putting failed reports back must not send v2 after v3
        assert ob.requeue(State.FAILED, now=T0 + 21 * 86400) == 0
        assert ob.due(T0 + 21 * 86400) == []


def test_prune_drops_superseded_bodies(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.add(version(1), T0)
        ob.add(version(2), T0 + 10)
        assert ob.prune(delivered_before=T0 + 5) == 1
        (old,) = list(ob.items(State.SUPERSEDED))
        assert old.report.body == b""
        assert ob.add(version(1), T0 + 20) is False  # the row still knows it


# the first layout of the outbox, as darknet-iodef wrote it before versions (kept here on purpose:
# the migration must keep reading files written by that code)
LAYOUT0 = """
CREATE TABLE reports (
    id INTEGER PRIMARY KEY, incident_id TEXT NOT NULL, recipient TEXT NOT NULL, channel TEXT NOT NULL,
    destination TEXT NOT NULL, kind TEXT NOT NULL DEFAULT '', media_type TEXT NOT NULL,
    filename TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '', body BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, next_attempt REAL NOT NULL,
    last_attempt REAL, delivered REAL, last_status INTEGER, last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (incident_id, recipient, channel)
);
CREATE INDEX reports_due ON reports (state, next_attempt);
"""


def _old_rid_body(signer_pki: Pki, n: int) -> tuple[str, bytes]:
    """A signed RID Report as the first layout's code made it: the IODEF document without a revision mark."""
    docs = build_documents(((str(i), dict(e)) for i, e in enumerate(EVENTS)), None, ReporterSettings())
    r = docs.reports[n]
    from lxml import etree

    root = etree.fromstring(r.xml)
    for mark in root.iter("{urn:ietf:params:xml:ns:iodef-2.0}AdditionalData"):
        if mark.get("meaning") == "report-revision":
            mark.getparent().remove(mark)
    signer = SigningIdentity.load(signer_pki.client.key_path, signer_pki.client.cert_path)
    return r.incident_id, build_report(root, incident_id=r.incident_id, incident_name="telescope.example.net",
                                       tlp="amber", signer=signer)


def test_an_outbox_of_the_first_layout_is_migrated(tmp_path: Path, signer_pki: Pki) -> None:
    path = tmp_path / "old.sqlite"
    (iid0, body0), (iid1, body1) = _old_rid_body(signer_pki, 0), _old_rid_body(signer_pki, 1)
    with sqlite3.connect(path) as db:
        db.executescript(LAYOUT0)
        rows = [(iid0, "sent", body0), (iid1, "queued", body1), ("inc-pruned", "sent", b"")]
        db.executemany("INSERT INTO reports (incident_id, recipient, channel, destination, media_type, "
                       "filename, body, state, created, next_attempt) "
                       "VALUES (?, 'unassigned/192.0.2.0', 'rid', "
                       "'https://x.example/', 'text/xml', 'f.xml', ?, ?, 1, 1)",
                       [(i, b, st) for i, st, b in rows])
    with Outbox(path) as ob:
        assert ob.counts()[State.SENT] == 2 and ob.counts()[State.QUEUED] == 1
        # the same events rendered today (with the revision mark, signed anew) are not news
        docs = build_documents(((str(i), dict(e)) for i, e in enumerate(EVENTS)), None, ReporterSettings())
        same = [Report(r.incident_id, "unassigned/192.0.2.0", "rid", "https://x.example/", r.xml,
                       revision=r.revision, digest=content_digest(r.xml)) for r in docs.reports[:2]]
        assert ob.add_many(same, T0) == AddResult(0, 2)
        # a changed document for the incident sent under the first layout is an update
        assert ob.add_many([Report(iid0, "unassigned/192.0.2.0", "rid", "https://x.example/", b"<new/>",
                                   revision=9)], T0).updates == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    with Outbox(path) as again:  # opening a migrated file again changes nothing
        assert len(list(again.items())) == 4


def test_a_file_that_is_no_outbox_is_refused_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for path, why in ((junk, "not a usable SQLite file"), (other, "not an outbox"),
                      (newer, "refusing to touch it")):
        with pytest.raises(ConfigError) as err:
            Outbox(path)
        assert str(path) in str(err.value) and why in str(err.value) and "\n" not in str(err.value)


def test_content_digest_sees_the_document_not_its_envelope(signer_pki: Pki) -> None:
    docs = build_documents(((str(i), dict(e)) for i, e in enumerate(EVENTS)), None, ReporterSettings())
    signer = SigningIdentity.load(signer_pki.client.key_path, signer_pki.client.cert_path)
    from lxml import etree

    r = next(x for x in docs.reports if x.recipient.id == "unassigned/192.0.2.0_24" and x.kind == "scan")
    bodies = [build_report(etree.fromstring(r.xml), incident_id=r.incident_id, incident_name="n", tlp="red",
                           signer=signer) for _ in range(2)]
    assert bodies[0] != bodies[1]  # ECDSA: new signature bytes each time
    assert content_digest(bodies[0]) == content_digest(bodies[1]) == content_digest(r.xml)
    more = [*EVENTS, scan_event("late", "192.0.2.5")]
    late = build_documents(((str(i), dict(e)) for i, e in enumerate(more)), None, ReporterSettings())
    changed = next(x for x in late.reports if x.incident_id == r.incident_id)
    assert content_digest(changed.xml) != content_digest(r.xml) and changed.revision > r.revision
