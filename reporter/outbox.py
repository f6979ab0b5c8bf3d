"""The durable outbox: every report is stored before it is sent, and leaves only when delivered.

Theory of operation (issue 4 "Delivery"; DOMAIN.md section 7):

* One SQLite file (WAL journal, synchronous=FULL) holds each report with its
  recipient, channel and body. :meth:`Outbox.add` commits before anything is
  sent, and :meth:`Outbox.record` marks a report delivered only after the
  peer said so; a crash in between leaves it queued, so a restart resumes and
  sends it again. That is safe: RID sending is idempotent (RFC 6546 section
  3) and the stable IncidentID lets the receiver recognise the resend.
* Duplicates are suppressed by (IncidentID, recipient, channel): adding the
  same report twice keeps the first copy and its state, so re-running the
  report command over the same events sends nothing twice.
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
``failed`` (gave up on transient errors), ``rejected`` (refused by the peer).
Times are seconds since the epoch and always passed in (``now``), never read
from the wall clock here.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from reporter.sqlite_private import open_private_db
from reporter.transport import Outcome, OutcomeKind

__all__ = [
    "STATES",
    "BackoffPolicy",
    "Outbox",
    "OutboxItem",
    "Report",
    "State",
    "backoff_delay",
]


class State(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id           INTEGER PRIMARY KEY,
    incident_id  TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    channel      TEXT NOT NULL,
    destination  TEXT NOT NULL,
    kind         TEXT NOT NULL DEFAULT '',
    media_type   TEXT NOT NULL,
    filename     TEXT NOT NULL,
    summary      TEXT NOT NULL DEFAULT '',
    body         BLOB NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'rejected')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    created      REAL NOT NULL,
    next_attempt REAL NOT NULL,
    last_attempt REAL,
    delivered    REAL,
    last_status  INTEGER,
    last_error   TEXT NOT NULL DEFAULT '',
    UNIQUE (incident_id, recipient, channel)
);
CREATE INDEX IF NOT EXISTS reports_due ON reports (state, next_attempt);
"""

_COLUMNS = ("id, incident_id, recipient, channel, destination, kind, media_type, filename, summary, body, "
            "state, attempts, created, next_attempt, last_attempt, delivered, last_status, last_error")


def _item(row: tuple[Any, ...]) -> OutboxItem:
    (id_, incident_id, recipient, channel, destination, kind, media_type, filename, summary, body,
     state, attempts, created, next_attempt, last_attempt, delivered, last_status, last_error) = row
    report = Report(incident_id, recipient, channel, destination, bytes(body), media_type, filename,
                    kind, summary)
    return OutboxItem(id_, report, State(state), attempts, created, next_attempt, last_attempt,
                      delivered, last_status, last_error)


class Outbox:
    """The SQLite outbox. One process delivers from a file at a time; readers may be many."""

    def __init__(self, path: str | Path, policy: BackoffPolicy | None = None) -> None:
        self.path = Path(path)
        self.policy = policy or BackoffPolicy()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_private_db(self.path, _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, report: Report, now: float) -> bool:
        """Store ``report`` as queued, due now; False when it was already there (a duplicate)."""
        return self.add_many([report], now) == (1, 0)

    def add_many(self, reports: Iterable[Report], now: float) -> tuple[int, int]:
        """Store many reports in one transaction; (added, duplicates)."""
        added = dup = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in reports:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO reports (incident_id, recipient, channel, destination, kind, "
                        "media_type, filename, summary, body, state, created, next_attempt) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                        (r.incident_id, r.recipient, r.channel, r.destination, r.kind, r.media_type,
                         r.filename, r.summary, r.body, now, now),
                    )
                    if cur.rowcount == 1:
                        added += 1
                    else:
                        dup += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added, dup

    def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Queued reports whose next attempt is due, oldest schedule first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM reports WHERE state = 'queued' AND next_attempt <= ? "
                "ORDER BY next_attempt, id LIMIT ?", (now, limit)).fetchall()
        return [_item(r) for r in rows]

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
        """Put failed (or rejected) reports back in the queue, e.g. after fixing a peer's setting."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE reports SET state = 'queued', next_attempt = ?, created = ? WHERE state = ?",
                (now, now, state.value))
            return cur.rowcount

    def prune(self, delivered_before: float) -> int:
        """Drop the bodies of reports delivered before ``delivered_before``; rows stay.

        The row is what suppresses duplicates (IncidentID, recipient, channel)
        and answers the operator; the body, once delivered, is only weight.
        """
        with self._lock:
            cur = self._db.execute(
                "UPDATE reports SET body = x'' WHERE state = 'sent' AND delivered < ? AND length(body) > 0",
                (delivered_before,))
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
