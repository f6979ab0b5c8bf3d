"""Events in, finished documents out: the sans-I/O core of ``darknet-iodef report``.

Theory of operation: :func:`build_documents` checks each event
(:func:`reporter.grouping.parse_reportable`; a bad one is counted with its
one-line reason and skipped), groups the rest (:mod:`reporter.grouping`),
and renders every group as IODEF 2.0 XML, RFC 8727 JSON and, with a signing
key, a signed RID Report. The result is a list of :class:`OutgoingReport` --
the hand-over record to delivery (files, RID over HTTPS, e-mail) -- plus the
events held back for the operator. Nothing here opens a file or a socket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from darknet_iodef.errors import RecordError
from reporter import iodef, jsoniodef, rid
from reporter.contacts import Contact, ContactTable
from reporter.grouping import Recipient, ReportGroup, Withheld, group_events, parse_reportable
from reporter.settings import ReporterSettings

__all__ = [
    "REVISION_MEANING",
    "DocumentSet",
    "OutgoingReport",
    "build_documents",
    "render",
    "report_revision",
]

#: AdditionalData@meaning of the number that orders versions of one incident's document
REVISION_MEANING = "report-revision"


@dataclass(frozen=True, slots=True)
class OutgoingReport:
    """One report for one recipient, in every format that was asked for."""

    recipient: Recipient
    incident_id: str
    kind: str
    period_start_ns: int
    sources: tuple[str, ...]
    xml: bytes
    json: bytes | None
    rid_body: bytes | None  # signed RID Report, when a signing key was given
    revision: int = 0  # report revision: orders versions of the same IncidentID (report_revision)

    @property
    def contact(self) -> Contact | None:
        return self.recipient.contact

    @property
    def channel(self) -> str:
        """How delivery should send it: rid, email, or file (kept in the output directory)."""
        c = self.contact
        if c is None or not c.send:
            return "file"
        if c.format == "rid" and c.rid_url and self.rid_body is not None:
            return "rid"
        return "email" if c.abuse_email else "file"


@dataclass(frozen=True, slots=True)
class DocumentSet:
    reports: tuple[OutgoingReport, ...]
    withheld: tuple[Withheld, ...]
    invalid: tuple[RecordError, ...]
    events_read: int
    groups: tuple[ReportGroup, ...] = field(default=())

    def withheld_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(w.reason for w in self.withheld).items()))


def report_revision(group: ReportGroup) -> int:
    """The group's report revision: sum of ``revision + 1`` over its events (pure).

    Each event is in a group once, with its newest revision of the period,
    so adding an event or a newer revision of one raises the sum: a version
    with strictly more information always has a larger number. (Two versions
    whose information is not contained one in the other -- a rerun over
    other data -- may compare either way; the outbox then goes by arrival.)
    """
    return sum(e.revision + 1 for e in group.events)


def _mark_revision(root: etree._Element, revision: int) -> None:
    """``Incident/AdditionalData meaning="report-revision"``, last in Incident as RFC 7970 orders it."""
    incident = root.find(f"{{{iodef.IODEF_NS}}}Incident")
    assert incident is not None
    extra = etree.SubElement(incident, f"{{{iodef.IODEF_NS}}}AdditionalData", dtype="integer",
                             meaning=REVISION_MEANING)
    extra.text = str(revision)


def render(group: ReportGroup, settings: ReporterSettings,
           signer: rid.SigningIdentity | None) -> OutgoingReport:
    """All formats of one group."""
    root = iodef.build_iodef(group, settings)
    revision = report_revision(group)
    _mark_revision(root, revision)
    xml = iodef.serialize(root)
    js = jsoniodef.dumps(jsoniodef.to_json(root)) if "json" in settings.formats else None
    body = None
    if signer is not None:
        tlp = group.recipient.contact.tlp if group.recipient.contact else settings.default_tlp
        body = rid.build_report(root, incident_id=group.incident_id, incident_name=settings.incident_name,
                                tlp=tlp, signer=signer, lang=settings.lang)
    return OutgoingReport(group.recipient, group.incident_id, group.kind, group.period_start_ns,
                          tuple(s.ip for s in group.sources), xml, js, body, revision)


def build_documents(
    events: Iterable[tuple[str, dict[str, Any] | RecordError]],
    contacts: ContactTable | None,
    settings: ReporterSettings,
    signer: rid.SigningIdentity | None = None,
    source: str = "events",
) -> DocumentSet:
    """Check, group and render ``(position, event or its decoding error)`` pairs."""
    good = []
    invalid: list[RecordError] = []
    read = 0
    for position, item in events:
        read += 1
        if isinstance(item, RecordError):
            invalid.append(item)
            continue
        try:
            good.append(parse_reportable(item, source, position))
        except RecordError as exc:
            invalid.append(exc)
    groups, withheld = group_events(good, contacts, settings)
    reports = tuple(render(g, settings, signer) for g in groups)
    return DocumentSet(reports, tuple(withheld), tuple(invalid), read, tuple(groups))
