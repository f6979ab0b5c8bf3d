"""The durable outbox: every report is stored before it is sent, and leaves only when delivered.

Theory of operation (issue 4 "Delivery"; DOMAIN.md section 7):

* One SQLite file (WAL journal, synchronous=FULL) holds each report with its
  recipient, channel and body. :meth:`Outbox.add` commits before anything is
  sent, and :meth:`Outbox.record` marks a report delivered only after the
  peer said so; a crash in between leaves it queued, so a restart resumes and
  sends it again. That is safe: RID sending is idempotent (RFC 6546 section
  3) and the stable IncidentID lets the receiver recognise the resend.
* Versions (docs/reporting.md "Updates"): a report is identified by
  (IncidentID, recipient, channel) plus the digest of its IODEF document
  (:func:`content_digest`). The same document again -- a rerun over the same
  events, a resend after a crash -- is a duplicate: the first copy and its
  state are kept, nothing is sent twice. Another document under the same
  IncidentID is a new version of the incident, ordered by its report
  revision (:func:`reporter.documents.report_revision`): a newer one is
  queued and sent as an update, and an older version of it still queued (not
  accepted by the peer yet) becomes ``superseded`` and is never sent; one
  older than a version already queued or sent is stored ``superseded`` at
  once. Sent, rejected and failed versions stay as history.
* A transient failure schedules the next attempt with exponential backoff
  (:func:`backoff_delay`, a pure function): ``base * 2**(attempt-1)`` capped
  at ``cap``, times a jitter factor in [0.5, 1.0) derived from a hash of the
  IncidentID and attempt number -- deterministic (replayable, testable with a
  fake clock) yet different per report, so reports queued together for a peer
  that was down do not all come back at the same second.
* A report that keeps failing transiently for longer than ``give_up_after_s``
  becomes ``failed``; a 4xx or SMTP 5xx makes it ``rejected`` at once. Both
  keep the last reason and are listed for the operator, never deleted.

States: ``queued`` (waiting, maybe after failed attempts), ``sent``,
``failed`` (gave up on transient errors), ``rejected`` (refused by the peer),
``superseded`` (a newer version of the same incident replaced it before it
was delivered).

The file carries its schema version (``PRAGMA user_version``); an outbox of
the first layout (no versions) is migrated in one transaction when opened,
and a file that is not an outbox stops the program with one line naming it.
Times are seconds since the epoch and always passed in (``now``), never read
from the wall clock here.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from lxml import etree

from darknet_iodef.errors import ConfigError
from reporter.documents import REVISION_MEANING
from reporter.iodef import IODEF_NS
from reporter.sqlite_private import open_private_db
from reporter.transport import Outcome, OutcomeKind

__all__ = [
    "SCHEMA_VERSION",
    "STATES",
    "AddResult",
    "BackoffPolicy",
    "Outbox",
    "OutboxItem",
    "Report",
    "State",
    "backoff_delay",
    "content_digest",
]


class State(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


STATES = tuple(State)


@dataclass(frozen=True, slots=True)
class Report:
    """A document addressed to one recipient over one channel, as enqueued.

    ``channel`` is ``rid`` (``destination`` an https URL), ``mail`` (an
    e-mail address) or ``dir`` (a directory). ``summary`` is the short
    human-readable text that goes into an e-mail.
    """

    incident_id: str
    recipient: str
    channel: str
    destination: str
    body: bytes
    media_type: str = "text/xml"
    filename: str = "report.xml"
    kind: str = ""
    summary: str = ""
    #: orders versions of one incident (the document's report revision; 0: unknown)
    revision: int = 0
    #: identifies the content (:func:`content_digest` of the IODEF document); empty: taken from ``body``
    digest: str = ""


class AddResult(NamedTuple):
    """What :meth:`Outbox.add_many` did with the reports it was given."""

    added: int  # queued to be sent (new incidents and updates)
    duplicates: int  # the same document was already there: nothing to do
    updates: int = 0  # of ``added``: a new version of an incident with an earlier version there
    outdated: int = 0  # older than a version already queued or sent: stored superseded, not sent
    superseded: int = 0  # older versions still queued that the added ones replaced


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored report with its delivery state."""

    id: int
    report: Report
    state: State
    attempts: int
    created: float
    next_attempt: float
    last_attempt: float | None
    delivered: float | None
    last_status: int | None
    last_error: str
    superseded_by: int | None = None
    #: an earlier version of this incident already reached the recipient (set by :meth:`Outbox.due`)
    update: bool = False


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 30.0
    cap_s: float = 3600.0
    give_up_after_s: float = 7 * 86400.0


def backoff_delay(policy: BackoffPolicy, incident_id: str, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (pure, deterministic jitter)."""
    exp = min(policy.cap_s, policy.base_s * 2.0 ** max(0, min(attempts - 1, 62)))
    digest = hashlib.sha256(f"{incident_id}\x00{attempts}".encode()).digest()
    jitter = 0.5 + 0.5 * (int.from_bytes(digest[:8], "big") / 2.0**64)
    return exp * jitter


#: layout of the file (PRAGMA user_version); 0 is the first layout, one row per (incident, recipient, channel)
SCHEMA_VERSION = 2

_TABLE = """
CREATE TABLE reports (
    id            INTEGER PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    destination   TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT '',
    media_type    TEXT NOT NULL,
    filename      TEXT NOT NULL,
    summary       TEXT NOT NULL DEFAULT '',
    body          BLOB NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 0,
    digest        TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'rejected', 'superseded')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    created       REAL NOT NULL,
    next_attempt  REAL NOT NULL,
    last_attempt  REAL,
    delivered     REAL,
    last_status   INTEGER,
    last_error    TEXT NOT NULL DEFAULT '',
    superseded_by INTEGER,
    UNIQUE (incident_id, recipient, channel, digest)
)"""
_INDEX = "CREATE INDEX IF NOT EXISTS reports_due ON reports (state, next_attempt)"
#: the columns the first layout had, copied as they are by the migration
_V1_COLUMNS = ("id, incident_id, recipient, channel, destination, kind, media_type, filename, summary, body, "
               "state, attempts, created, next_attempt, last_attempt, delivered, last_status, last_error")

_COLUMNS = ("id, incident_id, recipient, channel, destination, kind, media_type, filename, summary, body, "
            "revision, digest, state, attempts, created, next_attempt, last_attempt, delivered, last_status, "
            "last_error, superseded_by")
_KEY = "incident_id = ? AND recipient = ? AND channel = ?"


def content_digest(body: bytes) -> str:
    """SHA-256 naming a report's content: its IODEF document, however it is carried.

    The document is found in a RID message or taken as it is, whitespace-only
    text (indentation, which differs between a document on its own and one
    inside a RID envelope) and the report-revision mark (a function of the
    content) are dropped, and the rest is hashed in exclusive C14N. So the
    signed RID Report (whose signature bytes change at every signing: ECDSA
    is randomised) and the plain XML of one document have the same digest,
    and outboxes of the first layout get digests that match the documents
    the same events give today. Bodies that are not IODEF XML (RFC 8727
    JSON, test bodies) are hashed as they are.
    """
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True,
                                                       remove_blank_text=True, huge_tree=False))
    except (etree.XMLSyntaxError, ValueError):
        return "raw:" + hashlib.sha256(body).hexdigest()
    doc = root if root.tag == f"{{{IODEF_NS}}}IODEF-Document" else next(
        root.iter(f"{{{IODEF_NS}}}IODEF-Document"), None)
    if doc is None:
        return "raw:" + hashlib.sha256(body).hexdigest()
    doc = etree.fromstring(etree.tostring(doc))  # a copy on its own: the envelope stays out of the C14N
    for incident in doc.findall(f"{{{IODEF_NS}}}Incident"):
        for mark in incident.findall(f"{{{IODEF_NS}}}AdditionalData[@meaning='{REVISION_MEANING}']"):
            incident.remove(mark)
    for el in doc.iter():
        if el.text is not None and not el.text.strip():
            el.text = None
        if el.tail is not None and not el.tail.strip():
            el.tail = None
    return "iodef:" + hashlib.sha256(etree.tostring(doc, method="c14n", exclusive=True)).hexdigest()


def _item(row: tuple[Any, ...]) -> OutboxItem:
    (id_, incident_id, recipient, channel, destination, kind, media_type, filename, summary, body,
     revision, digest, state, attempts, created, next_attempt, last_attempt, delivered, last_status,
     last_error, superseded_by) = row
    report = Report(incident_id, recipient, channel, destination, bytes(body), media_type, filename,
                    kind, summary, revision, digest)
    return OutboxItem(id_, report, State(state), attempts, created, next_attempt, last_attempt,
                      delivered, last_status, last_error, superseded_by)


def _open(path: Path) -> sqlite3.Connection:
    """The outbox file at the current layout (migrated if it is of the first); ConfigError otherwise."""
    where = f"outbox {path}"
    try:
        db = open_private_db(path, "")
    except OSError as exc:
        raise ConfigError(where, f"cannot open: {exc.strerror}") from None
    except sqlite3.DatabaseError as exc:
        raise ConfigError(where, f"not a usable SQLite file ({exc})") from None
    try:
        _migrate(db, where)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise ConfigError(where, f"cannot read or migrate it ({exc})") from None
    except ConfigError:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, where: str) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version > SCHEMA_VERSION:
        raise ConfigError(where, f"has outbox layout {version}; this version of darknet-iodef knows up to "
                                 f"{SCHEMA_VERSION} (refusing to touch it)")
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "reports" not in tables:
            if tables:
                names = ", ".join(sorted(tables))
                raise ConfigError(where, f"is a SQLite file but not an outbox (tables: {names})")
            db.execute(_TABLE)
        else:
            columns = {r[1] for r in db.execute("PRAGMA table_info(reports)")}
            missing = {c.strip() for c in _V1_COLUMNS.split(",")} - columns
            if missing:
                raise ConfigError(where, f"has a 'reports' table without {', '.join(sorted(missing))}: "
                                         "not an outbox")
            # layout 0 -> 2: the UNIQUE constraint changes, which SQLite can only do by copying the table
            db.execute("ALTER TABLE reports RENAME TO reports_layout0")
            db.execute("DROP INDEX IF EXISTS reports_due")
            db.execute(_TABLE)
            db.execute(f"INSERT INTO reports ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM reports_layout0")
            db.execute("DROP TABLE reports_layout0")
            # digests from the stored bodies, so the same events do not make "updates" of them; a body
            # already pruned (delivered long ago) keeps an empty digest: its content is unknown
            rows = db.execute("SELECT id, body FROM reports WHERE length(body) > 0").fetchall()
            db.executemany("UPDATE reports SET digest = ? WHERE id = ?",
                           [(content_digest(bytes(body)), id_) for id_, body in rows])
        db.execute(_INDEX)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class Outbox:
    """The SQLite outbox. One process delivers from a file at a time; readers may be many."""

    def __init__(self, path: str | Path, policy: BackoffPolicy | None = None) -> None:
        self.path = Path(path)
        self.policy = policy or BackoffPolicy()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(self.path)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, report: Report, now: float) -> bool:
        """Store ``report`` as queued, due now; False when it is not to be sent (duplicate or outdated)."""
        return self.add_many([report], now).added == 1

    def add_many(self, reports: Iterable[Report], now: float) -> AddResult:
        """Store many reports in one transaction (see the module docstring for versions)."""
        counts = dict.fromkeys(AddResult._fields, 0)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in reports:
                    for name in self._add_one(r, now):
                        counts[name] += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return AddResult(**counts)

    def _add_one(self, r: Report, now: float) -> Iterator[str]:
        """Store one report inside add_many's transaction; yields the AddResult fields it counts in."""
        digest = r.digest or content_digest(r.body)
        key = (r.incident_id, r.recipient, r.channel)
        db = self._db
        if db.execute(f"SELECT 1 FROM reports WHERE {_KEY} AND digest = ?", (*key, digest)).fetchone():
            yield "duplicates"
            return
        newer = db.execute(
            f"SELECT id, revision, state FROM reports WHERE {_KEY} AND state IN ('queued', 'sent') "
            "AND revision > ? ORDER BY revision DESC, id DESC LIMIT 1", (*key, r.revision)).fetchone()
        (earlier,) = db.execute(f"SELECT COUNT(*) FROM reports WHERE {_KEY}", key).fetchone()
        state, error, by = State.QUEUED, "", None
        if newer is not None:
            state, error, by = State.SUPERSEDED, f"older than revision {newer[1]} ({newer[2]})", newer[0]
        cur = db.execute(
            "INSERT INTO reports (incident_id, recipient, channel, destination, kind, media_type, filename, "
            "summary, body, revision, digest, state, created, next_attempt, last_error, superseded_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, r.destination, r.kind, r.media_type, r.filename, r.summary, r.body, r.revision, digest,
             state.value, now, now, error, by),
        )
        if state is State.SUPERSEDED:
            yield "outdated"
            return
        yield "added"
        if earlier:
            yield "updates"
        # an older version nobody has accepted yet: the recipient gets only the newest
        replaced = db.execute(
            f"UPDATE reports SET state = 'superseded', superseded_by = ?, last_error = ? "
            f"WHERE {_KEY} AND state = 'queued' AND id != ?",
            (cur.lastrowid, f"superseded by revision {r.revision}", *key, cur.lastrowid)).rowcount
        for _ in range(replaced):
            yield "superseded"

    def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Queued reports whose next attempt is due, oldest schedule first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, EXISTS (SELECT 1 FROM reports AS v WHERE v.incident_id = "
                "reports.incident_id AND v.recipient = reports.recipient AND v.channel = reports.channel "
                "AND v.state = 'sent' AND v.id != reports.id) FROM reports WHERE state = 'queued' "
                "AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?", (now, limit)).fetchall()
        return [replace(_item(r[:-1]), update=bool(r[-1])) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest queued report is due (None when nothing is queued)."""
        with self._lock:
            (value,) = self._db.execute(
                "SELECT MIN(next_attempt) FROM reports WHERE state = 'queued'").fetchone()
        return value

    def record(self, item_id: int, outcome: Outcome, now: float) -> State:
        """Apply one attempt's outcome; returns the report's new state."""
        with self._lock:
            row = self._db.execute("SELECT incident_id, attempts, created, state FROM reports WHERE id = ?",
                                   (item_id,)).fetchone()
            if row is None:
                raise KeyError(item_id)
            incident_id, attempts, created, state = row
            if state == State.SUPERSEDED and outcome.kind is OutcomeKind.DELIVERED:
                # replaced while it was on its way (another run added a newer version): it did arrive
                self._db.execute("UPDATE reports SET state = 'sent', attempts = ?, last_attempt = ?, "
                                 "delivered = ?, last_status = ? WHERE id = ?",
                                 (attempts + 1, now, now, outcome.status, item_id))
                return State.SENT
            if state != State.QUEUED:
                return State(state)  # already settled (e.g. by another run); keep the first verdict
            attempts += 1
            if outcome.kind is OutcomeKind.DELIVERED:
                new, nxt, delivered = State.SENT, now, now
            elif outcome.kind is OutcomeKind.REJECTED:
                new, nxt, delivered = State.REJECTED, now, None
            else:
                delay = backoff_delay(self.policy, incident_id, attempts)
                nxt, delivered = now + delay, None
                new = State.FAILED if nxt - created > self.policy.give_up_after_s else State.QUEUED
            self._db.execute(
                "UPDATE reports SET state = ?, attempts = ?, next_attempt = ?, last_attempt = ?, "
                "delivered = ?, last_status = ?, last_error = ? WHERE id = ?",
                (new.value, attempts, nxt, now, delivered, outcome.status, outcome.reason, item_id),
            )
        return new

    def requeue(self, state: State = State.FAILED, now: float = 0.0) -> int:
        """Put failed (or rejected) reports back in the queue, e.g. after fixing a peer's setting.

        Only the newest version of an incident: one that a later version
        (queued or sent) replaced would reach the peer after it.
        """
        with self._lock:
            cur = self._db.execute(
                "UPDATE reports SET state = 'queued', next_attempt = ?, created = ? WHERE state = ? "
                "AND NOT EXISTS (SELECT 1 FROM reports AS n WHERE n.incident_id = reports.incident_id "
                "AND n.recipient = reports.recipient AND n.channel = reports.channel AND n.id > reports.id "
                "AND n.state IN ('queued', 'sent'))",
                (now, now, state.value))
            return cur.rowcount

    def prune(self, delivered_before: float) -> int:
        """Drop the bodies of reports delivered (or superseded) before ``delivered_before``; rows stay.

        The row is what suppresses duplicates (IncidentID, recipient, channel,
        digest) and answers the operator; the body, once delivered or replaced
        by a newer version, is only weight.
        """
        with self._lock:
            cur = self._db.execute(
                "UPDATE reports SET body = x'' WHERE length(body) > 0 AND "
                "((state = 'sent' AND delivered < ?) OR (state = 'superseded' AND created < ?))",
                (delivered_before, delivered_before))
            return cur.rowcount

    def queued_channels(self) -> set[str]:
        """Channels of the reports still queued (which senders a run needs)."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT channel FROM reports WHERE state = 'queued'").fetchall()
        return {r[0] for r in rows}

    def counts(self) -> dict[State, int]:
        """Number of reports in each state (every state present, zero or not)."""
        result = dict.fromkeys(State, 0)
        with self._lock:
            for state, n in self._db.execute("SELECT state, COUNT(*) FROM reports GROUP BY state"):
                result[State(state)] = n
        return result

    def items(self, state: State | None = None, limit: int = 1000) -> Iterator[OutboxItem]:
        """Reports for the operator, newest first, optionally of one state."""
        with self._lock:
            if state is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM reports ORDER BY id DESC LIMIT ?",
                                        (limit,)).fetchall()
            else:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM reports WHERE state = ? ORDER BY id DESC "
                                        "LIMIT ?", (state.value, limit)).fetchall()
        for r in rows:
            yield _item(r)
