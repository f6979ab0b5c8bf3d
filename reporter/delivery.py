"""Delivery: reports into the outbox, and the loop that drains it through one failure policy.

Theory of operation (issue 4 "Delivery"; STYLE.md habit 5, failure policy in
the runner, once):

* :func:`outbox_reports` turns the report command's hand-over records
  (:class:`reporter.documents.OutgoingReport`) into outbox entries, one per
  recipient and channel: ``rid`` (the signed RID Report to the contact's
  RID endpoint), ``email`` (the document in the contact's preferred format,
  with a summary, to the abuse mailbox) or ``file`` (a directory per
  recipient, for a spool that another tool picks up), each with the
  document's report revision and content digest. :func:`enqueue` stores
  them; the same document again is counted, not stored twice, and a new
  version of an incident goes out as an update (:mod:`reporter.outbox`).
* :func:`deliver_due` takes the reports that are due, hands each to the
  sender of its channel and records the :class:`~reporter.transport.Outcome`
  in the outbox, which applies the policy: delivered -> ``sent``; rejected
  (HTTP 4xx, SMTP 5xx) -> ``rejected`` with the reason, never resent;
  transient -> next attempt after a backoff, ``failed`` after
  ``give_up_after_s``. A sender that raises (a bug) counts as transient with
  the error logged, so one bad report cannot stop the others.
* :func:`run_delivery` repeats that until the outbox holds nothing due within
  the time allowed, sleeping until the next report is due. Time comes from an
  injected clock, so tests run hours of backoff in milliseconds.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from darknet_iodef.errors import ConfigError
from darknet_iodef.events import iso_time
from darknet_iodef.metrics import reporter_metrics
from reporter.documents import OutgoingReport
from reporter.mail import summary_text
from reporter.outbox import Outbox, OutboxItem, Report, State, content_digest
from reporter.transport import Outcome, OutcomeKind, RidTransport, parse_endpoint

__all__ = [
    "CHANNELS",
    "DeliveryStats",
    "DirectorySender",
    "EnqueueStats",
    "RidSender",
    "Sender",
    "deliver_due",
    "enqueue",
    "outbox_reports",
    "run_delivery",
]

log = logging.getLogger(__name__)

CHANNELS = ("rid", "email", "file")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Sender(Protocol):
    """Delivers one outbox item over one channel and says what became of it."""

    def send(self, item: OutboxItem, now: float) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class EnqueueStats:
    added: int = 0
    duplicates: int = 0
    updates: int = 0  # of added: new versions of incidents already in the outbox
    outdated: int = 0  # older than a version already queued or sent: not sent
    superseded: int = 0  # queued older versions replaced by the added ones


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    attempted: int = 0
    delivered: int = 0
    rejected: int = 0
    retrying: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(self.attempted + other.attempted, self.delivered + other.delivered,
                             self.rejected + other.rejected, self.retrying + other.retrying,
                             self.failed + other.failed)


def outbox_reports(reports: Iterable[OutgoingReport], operator: str = "the telescope operator",
                   channels: Iterable[str] = ("rid", "email")) -> list[Report]:
    """Outbox entries for the report command's documents, for the channels wanted (pure).

    ``file`` reports are already on disk in the report command's output; they
    become outbox entries only when ``"file"`` is among ``channels`` (a spool
    directory for another tool).
    """
    wanted = set(channels)
    out: list[Report] = []
    for r in reports:
        digest = content_digest(r.xml)
        channel = r.channel
        if channel not in wanted:
            continue
        contact = r.contact
        if channel == "file" and contact is not None and not contact.send:
            continue  # the contact asked not to be sent anything, spool included
        if channel == "rid":
            assert contact is not None and contact.rid_url and r.rid_body is not None
            out.append(Report(r.incident_id, r.recipient.id, "rid", contact.rid_url, r.rid_body, "text/xml",
                              f"{r.incident_id}.rid.xml", r.kind, revision=r.revision, digest=digest))
            continue
        use_json = contact is not None and contact.format == "json" and r.json is not None
        body = r.json if use_json and r.json is not None else r.xml
        media, ext = ("application/json", "json") if use_json else ("application/xml", "xml")
        filename = f"{r.incident_id}.{ext}"
        if channel == "email":
            assert contact is not None and contact.abuse_email
            summary = summary_text(
                organisation=contact.organisation, incident_id=r.incident_id, kind=r.kind,
                period=iso_time(r.period_start_ns), sources=r.sources, operator=operator, filename=filename)
            out.append(Report(r.incident_id, r.recipient.id, "email", contact.abuse_email, body, media,
                              filename, r.kind, summary, revision=r.revision, digest=digest))
        else:
            out.append(Report(r.incident_id, r.recipient.id, "file", r.recipient.id, body, media, filename,
                              r.kind, revision=r.revision, digest=digest))
    return out


def enqueue(outbox: Outbox, reports: Iterable[Report], now: float) -> EnqueueStats:
    """Store reports in the outbox (one transaction); duplicates are counted, not stored twice."""
    result = outbox.add_many(reports, now)
    _gauge(outbox)
    if result.updates or result.outdated:
        log.info("outbox: %d updates of incidents already reported (%d older queued versions replaced); "
                 "%d versions older than one already queued or sent, not sent",
                 result.updates, result.superseded, result.outdated)
    return EnqueueStats(*result)


class RidSender:
    """The ``rid`` channel: RID over HTTPS to the report's endpoint URL."""

    def __init__(self, transport: RidTransport) -> None:
        self.transport = transport

    def send(self, item: OutboxItem, now: float) -> Outcome:
        try:
            endpoint = parse_endpoint(item.report.destination)
        except ConfigError as exc:
            # the contact's URL is wrong: no retry can fix this report as it is
            return Outcome(OutcomeKind.REJECTED, f"bad RID endpoint: {exc.reason}")
        return self.transport.send(endpoint, item.report.body)


class DirectorySender:
    """The ``file`` channel: the document written into ``root/<recipient>/`` atomically."""

    def __init__(self, root: str | Path) -> None:
        if not str(root):
            raise ConfigError("[delivery] dir_root", "is required for the 'file' channel")
        self.root = Path(root)

    def send(self, item: OutboxItem, now: float) -> Outcome:
        r = item.report
        parts = Path(r.destination).parts
        # recipient ids come from the contact table: keep them inside root whatever they say
        if not parts or not all(_SAFE_PART.match(p) for p in parts) or not _SAFE_PART.match(r.filename):
            return Outcome(OutcomeKind.REJECTED, f"unsafe path {r.destination!r}/{r.filename!r}")
        target = self.root.joinpath(*parts, r.filename)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(r.body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            return Outcome(OutcomeKind.TRANSIENT, f"cannot write {target}: {exc.strerror}")
        return Outcome(OutcomeKind.DELIVERED)


def _gauge(outbox: Outbox) -> None:
    reporter_metrics().queued_reports.set(outbox.counts()[State.QUEUED])


def _count(channel: str, outcome: Outcome) -> None:
    m = reporter_metrics()
    if outcome.kind is OutcomeKind.DELIVERED:
        m.sent_reports.labels(channel).inc()
    else:
        m.failed_reports.labels(channel, outcome.kind.value).inc()


def _route(report: Report) -> str:
    """What a transient failure says is down: the RID endpoint, the SMTP server, the spool."""
    if report.channel == "rid":
        return f"rid {report.destination}"
    return report.channel  # one SMTP server, one spool directory


def deliver_due(outbox: Outbox, senders: Mapping[str, Sender], now: float, limit: int = 100) -> DeliveryStats:
    """One round: every report due at ``now`` (up to ``limit``) is attempted once.

    After a transient failure on a route (a RID endpoint, the SMTP server),
    the route's other reports in this round are not tried; they are
    rescheduled with the same reason, so a peer that times out costs one
    timeout per round, not one per report.
    """
    attempted = delivered = rejected = retrying = failed = 0
    #: routes that failed transiently in this round, with the reason
    down: dict[str, str] = {}
    for item in outbox.due(now, limit):
        r = item.report
        sender = senders.get(r.channel)
        route = _route(r)
        if route in down:
            # a peer that just timed out would cost every other report the same wait
            outcome = Outcome(OutcomeKind.TRANSIENT, f"not tried: {down[route]}")
        elif sender is None:
            outcome = Outcome(OutcomeKind.TRANSIENT, f"no sender configured for channel {r.channel!r}")
        else:
            try:
                outcome = sender.send(item, now)
            except Exception as exc:  # a bug in a sender must not stop the other reports
                log.exception("sending report %s to %s failed unexpectedly", r.incident_id, r.recipient)
                outcome = Outcome(OutcomeKind.TRANSIENT, f"internal error: {exc!r}")
            _count(r.channel, outcome)
            # unreachable (no status), or a RID peer answering 5xx/3xx: the route is down; an SMTP
            # 4xx for one mailbox (greylisting) says nothing about the others
            if outcome.kind is OutcomeKind.TRANSIENT and (outcome.status is None or r.channel == "rid"):
                down[route] = outcome.reason
        state = outbox.record(item.id, outcome, now)
        attempted += 1
        if state is State.SENT:
            delivered += 1
            log.info("delivered report %s to %s by %s", r.incident_id, r.recipient, r.channel)
        elif state is State.REJECTED:
            rejected += 1
            log.warning("report %s was rejected by %s (%s): %s; not resending", r.incident_id, r.recipient,
                        r.destination, outcome.reason)
        elif state is State.FAILED:
            failed += 1
            log.error("giving up on report %s to %s after %d attempts: %s", r.incident_id, r.recipient,
                      item.attempts + 1, outcome.reason)
        else:
            retrying += 1
            log.info("report %s to %s not delivered (%s); will retry", r.incident_id, r.recipient,
                     outcome.reason)
    if attempted:
        _gauge(outbox)
    return DeliveryStats(attempted, delivered, rejected, retrying, failed)


def run_delivery(
    outbox: Outbox,
    senders: Mapping[str, Sender],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
    stop: threading.Event | None = None,
    max_wait_s: float | None = None,
    limit: int = 100,
    max_idle_sleep_s: float = 60.0,
) -> DeliveryStats:
    """Drain the outbox until nothing is queued, ``max_wait_s`` has passed, or ``stop`` is set.

    ``max_wait_s=None`` runs until stopped (a daemon); ``0`` makes one round.
    ``sleep`` defaults to waiting on ``stop`` (so a signal ends the wait at
    once); tests pass a fake clock and a sleep that advances it.
    """
    stop = stop or threading.Event()
    wait: Callable[[float], object] = sleep or stop.wait
    started = clock()
    total = DeliveryStats()
    while not stop.is_set():
        now = clock()
        total += deliver_due(outbox, senders, now, limit)
        if outbox.due(now, 1):
            continue  # more than one round's worth is due
        nxt = outbox.next_due()
        if max_wait_s is not None and (nxt is None or nxt > started + max_wait_s):
            break
        if nxt is None:
            wait(max_idle_sleep_s)  # a daemon waits for new reports from another process
            continue
        wait(max(0.0, min(nxt - clock(), max_idle_sleep_s)))
    return total
