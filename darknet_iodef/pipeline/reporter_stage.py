"""The reporter stage: event messages in, IODEF documents per reporting period out.

Theory of operation. Reporting periods are a grid of event time
(``[reporter] period_s`` over each revision's ``time.observation``, as in
:mod:`reporter.grouping`). The stage keeps the events of every open period,
one copy per (``extra.event_id``, ``extra.revision``) -- at-least-once
delivery and a restarted aggregator re-send identical revisions, which are
dropped here. When the event-time watermark (the newest ``time.observation``
seen) passes a period's end by ``[pipeline] report_grace_s``, the period is
closed: :func:`reporter.documents.build_documents` renders it, the documents
are written (and queued for delivery with ``--send``), and the operator's
lists (``reports.jsonl``, ``unassigned.jsonl``, ``not-reported.jsonl``,
``invalid.jsonl``) are rewritten to cover every period so far, in the order
``darknet-iodef report`` gives them. A closed period stays in memory for
``report_keep_periods`` periods: a late revision re-renders it (same
IncidentID, newer content). At the end of a finite input every period closes.
The result is byte for byte what ``darknet-iodef report`` writes for the same
events.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darknet_iodef.bus.base import Message, TopicPartition
from darknet_iodef.errors import ConfigError, RecordError
from darknet_iodef.events import decode_event, encode_event
from darknet_iodef.metrics import ReporterMetrics
from darknet_iodef.runner import Output, Stage
from reporter.contacts import ContactTable
from reporter.documents import DocumentSet, OutgoingReport, build_documents
from reporter.grouping import Withheld, parse_reportable
from reporter.report_cmd import write_documents
from reporter.rid import SigningIdentity
from reporter.settings import ReporterSettings

__all__ = ["ReporterStage"]

log = logging.getLogger(__name__)

#: reasons group_events decides before the contact lookup, listed first (as ``report`` does)
_FIRST_PASS = frozenset({"spoofing-summary", "spoofed", "known-scanner"})


@dataclass(slots=True)
class _Period:
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    #: (event id, revision) pairs held: a re-delivered revision is dropped
    seen: set[tuple[str, int]] = field(default_factory=set)
    closed: bool = False
    dirty: bool = True
    #: per bus partition, the first offset of an event of this period not yet written out
    first_offsets: dict[TopicPartition, int] = field(default_factory=dict)


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ReporterStage(Stage):
    name = "reporter"

    def __init__(
        self,
        settings: ReporterSettings,
        out: Path,
        *,
        contacts: ContactTable | None = None,
        signer: SigningIdentity | None = None,
        grace_s: int = 300,
        keep_periods: int = 48,
        events_out: Path | None = None,
        deliver: Callable[[Sequence[OutgoingReport]], None] | None = None,
        metrics: ReporterMetrics | None = None,
        resume: bool = False,
    ) -> None:
        self.settings = settings
        self.out = out
        self.contacts = contacts
        self.signer = signer
        self.period_ns = settings.period_s * 1_000_000_000
        self.grace_ns = grace_s * 1_000_000_000
        self.keep_periods = keep_periods
        self.deliver = deliver
        self.metrics = metrics
        self.periods: dict[int, _Period] = {}
        self.watermark: int | None = None
        self._seq = 0
        self._reports: dict[str, dict[str, Any]] = {}
        self._assigned: dict[str, bool] = {}
        self._withheld: dict[tuple[str, Any], tuple[int, int, Withheld]] = {}
        self._invalid: list[RecordError] = []
        self._events_fh = None
        if events_out is not None:
            events_out.parent.mkdir(parents=True, exist_ok=True)
            self._events_fh = open(events_out, "ab")  # noqa: SIM115 -- closed in close()
        if resume:
            self._resume()
        self.events_read = 0
        self.duplicates = 0
        self.late_events = 0
        self.documents_written = 0

    def _resume(self) -> None:
        """Take over the operator's lists a previous run left in ``out`` (a restarted reporter)."""
        try:
            reports = self.out / "reports.jsonl"
            for line in reports.read_text().splitlines() if reports.exists() else []:
                row = json.loads(line)
                self._reports[row["incident_id"]] = row
                self._assigned[row["incident_id"]] = not str(row["recipient"]).startswith("unassigned/")
            rows: list[tuple[str, dict[str, Any]]] = []
            for name, field_name in (("not-reported.jsonl", "recipient"), ("unassigned.jsonl", "directory")):
                path = self.out / name
                for line in path.read_text().splitlines() if path.exists() else []:
                    row = json.loads(line)
                    rows.append((field_name, row))
            for i, (field_name, row) in enumerate(rows):
                w = Withheld(row["event"], row["reason"], row.get(field_name))
                seq = i - len(rows)  # before anything this run reads, in the order they were listed
                self._withheld[(w.reason, w.event.get("extra.event_id"))] = (seq, seq, w)
            invalid = self.out / "invalid.jsonl"
            for line in invalid.read_text().splitlines() if invalid.exists() else []:
                row = json.loads(line)
                self._invalid.append(RecordError(row["source"], row["position"], row["reason"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError("--out", f"cannot take over the lists in {self.out}: {exc}") from None

    # -- input ------------------------------------------------------------------------------------
    def process(self, message: Message) -> Iterable[Output]:
        ev = decode_event(
            message.value, message.topic, f"partition {message.partition} offset {message.offset}"
        )
        self.add(ev, message.where, (message.topic, message.partition), message.offset)
        self._close_due()
        return ()

    def held_offsets(self) -> Mapping[TopicPartition, int]:
        """Per partition, the first offset of an event whose period is not written yet.

        Those events exist only in memory: commits stop before them, so a
        restarted reporter reads them again (documents already written are
        rewritten identical).
        """
        held: dict[TopicPartition, int] = {}
        for period in self.periods.values():
            if period.dirty:
                for tp, off in period.first_offsets.items():
                    held[tp] = min(off, held.get(tp, off))
        return held

    def add(
        self, ev: dict[str, Any], position: str, tp: TopicPartition | None = None, offset: int = 0
    ) -> None:
        try:
            observed = parse_reportable(ev, "events", position).observation_ns
        except RecordError as exc:
            self.events_read += 1
            self._invalid.append(exc)
            return
        start = observed - observed % self.period_ns
        period = self.periods.get(start)
        key = (str(ev.get("extra.event_id")), int(ev.get("extra.revision") or 0))
        if period is not None and key in period.seen:
            self.duplicates += 1
            return
        self.events_read += 1
        self._seq += 1
        if self._events_fh is not None:
            self._events_fh.write(encode_event(ev))
        if period is None:
            oldest_kept = self._oldest_kept()
            if oldest_kept is not None and start < oldest_kept:
                self.late_events += 1
                log.warning(
                    "reporter: %s is a revision for period %d, closed and dropped from memory; not reported",
                    position,
                    start // 1_000_000_000,
                )
                return
            period = self.periods[start] = _Period()
        period.events.append((self._seq, position, ev))
        if tp is not None and tp not in period.first_offsets:
            period.first_offsets[tp] = offset  # offsets rise within a partition: the first is the least
        period.seen.add(key)
        period.dirty = True
        self.watermark = observed if self.watermark is None else max(self.watermark, observed)

    def _oldest_kept(self) -> int | None:
        if self.watermark is None:
            return None
        return self.watermark - self.watermark % self.period_ns - self.keep_periods * self.period_ns

    # -- closing periods --------------------------------------------------------------------------
    def idle(self) -> Iterable[Output]:
        return ()

    def finish(self) -> Iterable[Output]:
        self.close_all()
        return ()

    def _close_due(self) -> None:
        if self.watermark is None:
            return
        edge = self.watermark - self.period_ns - self.grace_ns
        due = [s for s, p in self.periods.items() if p.dirty and s <= edge]
        if due:
            self._render(sorted(due))

    def close_all(self) -> None:
        due = sorted(s for s, p in self.periods.items() if p.dirty)
        self._render(due)
        if self._events_fh is not None:
            self._events_fh.flush()

    def _render(self, starts: list[int]) -> None:
        fresh: list[OutgoingReport] = []
        for start in starts:
            period = self.periods[start]
            items = [(pos, ev) for _, pos, ev in period.events]
            seq_of = {id(ev): seq for seq, _, ev in period.events}
            docs = build_documents(iter(items), self.contacts, self.settings, self.signer, "events")
            self._write_reports(docs)
            fresh.extend(docs.reports)
            for w in docs.withheld:
                self._keep_withheld(w, seq_of.get(id(w.event), 0))
            period.closed, period.dirty = True, False
            period.first_offsets.clear()
        self._write_lists()
        oldest = self._oldest_kept()
        if oldest is not None:
            for s in [s for s, p in self.periods.items() if p.closed and not p.dirty and s < oldest]:
                del self.periods[s]
        if fresh and self.deliver is not None:
            self.deliver(fresh)

    def _write_reports(self, docs: DocumentSet) -> None:
        if not docs.reports:
            return
        rows = write_documents(DocumentSet(docs.reports, (), (), 0), self.out, self.settings.formats)
        for r, row in zip(docs.reports, rows, strict=True):
            self._reports[r.incident_id] = row
            self._assigned[r.incident_id] = r.recipient.assigned
            self.documents_written += 1
            if self.metrics:
                for fmt in row["files"]:
                    self.metrics.written_reports.labels(fmt).inc()

    def _keep_withheld(self, w: Withheld, seq: int) -> None:
        key = (w.reason, w.event.get("extra.event_id"))
        old = self._withheld.get(key)
        if old is None:
            self._withheld[key] = (seq, seq, w)
            return
        first, best_seq, best = old
        if (_revision(w), seq) >= (_revision(best), best_seq):
            self._withheld[key] = (min(first, seq), seq, w)
        else:
            self._withheld[key] = (min(first, seq), best_seq, best)

    def _write_lists(self) -> None:
        rows = sorted(self._reports.values(), key=lambda r: (r["recipient"], r["period_start"], r["kind"]))
        _write(self.out / "reports.jsonl", _jsonl(rows))
        kept = sorted(self._withheld.values(), key=lambda t: (t[2].reason not in _FIRST_PASS, t[0]))
        ws = [w for _, _, w in kept]
        _write(
            self.out / "unassigned.jsonl",
            _jsonl(
                {"reason": w.reason, "directory": w.recipient, "event": dict(w.event)}
                for w in ws
                if w.reason == "no-contact"
            ),
        )
        _write(
            self.out / "not-reported.jsonl",
            _jsonl(
                {"reason": w.reason, "recipient": w.recipient, "event": dict(w.event)}
                for w in ws
                if w.reason != "no-contact"
            ),
        )
        _write(
            self.out / "invalid.jsonl",
            _jsonl({"source": e.source, "position": e.position, "reason": e.reason} for e in self._invalid),
        )

    # -- summary ----------------------------------------------------------------------------------
    def documents(self) -> int:
        """Distinct documents written so far (a re-rendered period counts once)."""
        return len(self._reports)

    def recipients(self) -> int:
        return len({r["recipient"] for r in self._reports.values()})

    def unassigned(self) -> int:
        return sum(1 for assigned in self._assigned.values() if not assigned)

    def withheld_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, w in self._withheld.values():
            out[w.reason] = out.get(w.reason, 0) + 1
        return dict(sorted(out.items()))

    def close(self) -> None:
        if self._events_fh is not None:
            self._events_fh.close()
            self._events_fh = None


def _revision(w: Withheld) -> tuple[int, str]:
    rev = w.event.get("extra.revision")
    number = rev if isinstance(rev, int) and not isinstance(rev, bool) else 0
    return number, str(w.event.get("time.observation"))
