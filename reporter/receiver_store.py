"""Where the receiver keeps accepted reports: document files plus a SQLite index.

Theory of operation: the signed RID message is evidence, so it is kept
byte for byte as received (``rid/``), and the IODEF 2.0 document that was
inside the signature is kept beside it (``iodef/``) for tools that read
IODEF only. Files are named by the SHA-256 of the received body and written
atomically (temporary file, fsync, rename) before the index row is committed,
so the index never points at a missing or partial file.

A resend is recognised by the sender, the IncidentID (with its name) and the
SHA-256 of the signed IODEF document -- not of the message, because a sender
that signs again makes new signature bytes (ECDSA is randomised) for the same
report. It is not stored twice: RID sending is idempotent (RFC 6546 section
3), and the receiver still answers 200 so the sender stops resending. A
different document under the same IncidentID (a corrected or extended
report) is kept as another row: nothing a peer sends is silently dropped.
Each row carries the document's report revision (``Incident/AdditionalData
meaning="report-revision"``, docs/reporting.md "Updates"; 0 when the sender
writes none), so the newest version of an incident is one query away::

    SELECT * FROM received WHERE incident_name = ? AND incident_id = ? ORDER BY revision DESC, id DESC

An index written before the column existed gets it (value 0) when opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from reporter.documents import REVISION_MEANING
from reporter.iodef import IODEF_NS
from reporter.rid import RID_NS
from reporter.sqlite_private import open_private_db
from reporter.tlsconfig import PeerIdentity

__all__ = ["ReceivedReport", "ReceiverStore", "StoredReport", "describe_report"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    id                 INTEGER PRIMARY KEY,
    incident_id        TEXT NOT NULL,
    incident_name      TEXT NOT NULL,
    sender_subject     TEXT NOT NULL,
    sender_fingerprint TEXT NOT NULL,
    received           REAL NOT NULL,
    msg_type           TEXT NOT NULL,
    purpose            TEXT NOT NULL,
    kind               TEXT NOT NULL,
    body_bytes         INTEGER NOT NULL,
    iodef_bytes        INTEGER NOT NULL,
    sha256             TEXT NOT NULL,
    iodef_sha256       TEXT NOT NULL,
    rid_path           TEXT NOT NULL,
    iodef_path         TEXT NOT NULL,
    revision           INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sender_subject, incident_name, incident_id, iodef_sha256)
);
CREATE INDEX IF NOT EXISTS received_time ON received (received);
"""


@dataclass(frozen=True, slots=True)
class ReceivedReport:
    """What the index says about one report, taken from the signed content only."""

    incident_id: str
    incident_name: str
    msg_type: str
    purpose: str
    kind: str  # SystemImpact types, comma-separated (e.g. takeover-system, availability-service)
    revision: int = 0  # the sender's report revision: orders versions of one IncidentID


@dataclass(frozen=True, slots=True)
class StoredReport:
    id: int
    incident_id: str
    incident_name: str
    sender_subject: str
    sender_fingerprint: str
    received: float
    msg_type: str
    purpose: str
    kind: str
    body_bytes: int
    iodef_bytes: int
    sha256: str
    iodef_sha256: str
    rid_path: str
    iodef_path: str
    revision: int = 0


#: the report revision read from a peer's document: digits only, and small enough for SQLite
_REVISION = re.compile(r"^[0-9]{1,15}$")


def _revision(incident: etree._Element | None) -> int:
    if incident is None:
        return 0
    for extra in incident.findall(f"{{{IODEF_NS}}}AdditionalData"):
        if extra.get("meaning") == REVISION_MEANING:
            text = (extra.text or "").strip()
            return int(text) if _REVISION.match(text) else 0
    return 0


def describe_report(rid_root: etree._Element, iodef_root: etree._Element) -> ReceivedReport:
    """Index fields of a verified report (pure)."""
    policy = rid_root.find(f"{{{RID_NS}}}RIDPolicy")
    msg_type = policy.get("MsgType", "") if policy is not None else ""
    incident = iodef_root.find(f"{{{IODEF_NS}}}Incident")
    iid = incident.find(f"{{{IODEF_NS}}}IncidentID") if incident is not None else None
    kinds: list[str] = []
    for si in iodef_root.iter(f"{{{IODEF_NS}}}SystemImpact"):
        t = si.get("type", "")
        if t and t not in kinds:
            kinds.append(t)
    return ReceivedReport(
        incident_id=(iid.text or "").strip() if iid is not None else "",
        incident_name=iid.get("name", "") if iid is not None else "",
        msg_type=msg_type or "",
        purpose=incident.get("purpose", "") if incident is not None else "",
        kind=",".join(kinds),
        revision=_revision(incident),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # peers' reports may be TLP:AMBER or RED: readable by the receiver's user only
    with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ReceiverStore:
    """Accepted reports under ``root``: ``index.sqlite``, ``rid/<sha256>.xml``, ``iodef/<sha256>.xml``.

    One process owns a store (SQLite WAL allows readers beside it).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        index = self.root / "index.sqlite"
        self._db = open_private_db(index, _SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(received)")}
        if "revision" not in columns:
            # an index from before report revisions: the column is added, old rows say 0 (unknown)
            self._db.execute("ALTER TABLE received ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, body: bytes, iodef: bytes, report: ReceivedReport, sender: PeerIdentity,
            now: float) -> tuple[bool, int]:
        """Store one verified report; (True, row id) if new, (False, id of the earlier copy) if a resend."""
        digest = hashlib.sha256(body).hexdigest()
        doc_digest = hashlib.sha256(iodef).hexdigest()
        rid_rel = f"rid/{digest[:2]}/{digest}.xml"
        iodef_rel = f"iodef/{doc_digest[:2]}/{doc_digest}.xml"
        key = (sender.subject, report.incident_name, report.incident_id, doc_digest)
        existing = self._find(key)
        if existing is not None:
            return False, existing
        # files first, outside the lock: fsync is the slow part, and concurrent writers of the
        # same content write the same bytes to the same name (atomic rename), so no harm
        _write_atomic(self.root / rid_rel, body)
        _write_atomic(self.root / iodef_rel, iodef)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO received (incident_id, incident_name, sender_subject, "
                "sender_fingerprint, received, msg_type, purpose, kind, body_bytes, iodef_bytes, sha256, "
                "iodef_sha256, rid_path, iodef_path, revision) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (report.incident_id, report.incident_name, sender.subject, sender.fingerprint, now,
                 report.msg_type, report.purpose, report.kind, len(body), len(iodef), digest, doc_digest,
                 rid_rel, iodef_rel, report.revision))
            if cur.rowcount == 1:
                return True, int(cur.lastrowid or 0)
        # the same report arrived on another connection at the same moment and was stored first
        existing = self._find(key)
        assert existing is not None
        return False, existing

    def _find(self, key: tuple[str, str, str, str]) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM received WHERE sender_subject = ? AND incident_name = ? AND incident_id = ? "
                "AND iodef_sha256 = ?", key).fetchone()
        return None if row is None else int(row[0])

    def reports(self, limit: int = 1000) -> list[StoredReport]:
        """The index, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, incident_id, incident_name, sender_subject, sender_fingerprint, received, "
                "msg_type, purpose, kind, body_bytes, iodef_bytes, sha256, iodef_sha256, rid_path, "
                "iodef_path, revision "
                "FROM received ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [StoredReport(*r) for r in rows]

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM received").fetchone()
        return int(n)
