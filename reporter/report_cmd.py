"""``darknet-iodef report``: detection events -> IODEF 2.0 documents per recipient.

Output layout (``--out DIR``)::

    DIR/<recipient>/<IncidentID>.xml         IODEF 2.0 (RFC 7970)
    DIR/<recipient>/<IncidentID>.json        the same in RFC 8727 JSON
    DIR/<recipient>/<IncidentID>.rid.xml     signed RID Report (with --sign-key/--sign-cert)
    DIR/unassigned/<network>/...             sources without a contact (or no --contacts)
    DIR/reports.jsonl                        one line per document: recipient, id, revision, channel, files
    DIR/unassigned.jsonl                     events whose network has no contact
    DIR/not-reported.jsonl                   known scanners, spoofed sources, spoofing summaries...
    DIR/invalid.jsonl                        events that failed the checks, with the reason

Files are written to a temporary name and renamed, so a reader never sees
half a document; the same events give the same files (event time only;
ECDSA signatures are randomised, RSA ones are not).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from darknet_iodef import settings as cfg
from darknet_iodef.errors import ConfigError, InputError, RecordError
from darknet_iodef.events import decode_event, iso_time
from reporter import delivery_cmd
from reporter.contacts import load_contacts
from reporter.documents import DocumentSet, OutgoingReport, build_documents
from reporter.rid import SigningIdentity
from reporter.schemas import load_schemas
from reporter.settings import ReporterSettings

__all__ = ["read_event_lines", "register", "run", "write_documents"]

log = logging.getLogger("darknet_iodef.reporter")
#: invalid events logged one by one before the rest are only counted
MAX_LOGGED_INVALID = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this subcommand to ``darknet-iodef``."""
    p = subparsers.add_parser(
        "report",
        help="turn detection events into IODEF 2.0 / RID reports per recipient",
        description="Group detection events per recipient network and reporting period and write "
                    "IODEF 2.0 documents (XML, RFC 8727 JSON) and signed RID Reports.",
    )
    p.add_argument("--in", dest="events", required=True, type=Path, metavar="EVENTS.jsonl",
                   help="events from the aggregator (JSON lines; '-' for stdin)")
    p.add_argument("--contacts", type=Path, metavar="FILE",
                   help="constituency table (.toml or .csv); without it every document goes to unassigned/")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration ([reporter] table)")
    p.add_argument("--period", dest="period_s", type=int, metavar="SECONDS",
                   help="reporting period in seconds of event time (default 3600)")
    p.add_argument("--redact", action="store_const", const=True, default=None,
                   help="hide the telescope's prefixes in reports (see redact_mode)")
    p.add_argument("--format", dest="formats", metavar="LIST", help="xml,json (default both)")
    p.add_argument("--darknet", metavar="CIDRS", help="the telescope's dark prefixes")
    p.add_argument("--schemas", dest="schemas_dir", metavar="DIR",
                   help="directory with iodef-2.0.xsd and rid-with-iodef-2.0.xsd: validate every document")
    p.add_argument("--sign-key", type=Path, metavar="KEY", help="PEM private key that signs RID Reports")
    p.add_argument("--sign-cert", type=Path, metavar="CERT", help="PEM certificate of --sign-key")
    delivery_cmd.add_arguments(p)
    p.set_defaults(func=run)


def read_event_lines(path: Path) -> Iterator[tuple[str, dict[str, Any] | RecordError]]:
    """``(position, event or RecordError)`` per non-blank line of a JSON-lines file."""
    source = "stdin" if str(path) == "-" else str(path)
    try:
        fh = sys.stdin.buffer if source == "stdin" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(source, "", f"cannot read: {exc.strerror}") from None
    with fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            position = f"line {number}"
            try:
                yield position, decode_event(line, source, position)
            except RecordError as exc:
                yield position, exc


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows)


def write_documents(
    docs: DocumentSet, out: Path, formats: tuple[str, ...] = ("xml", "json")
) -> list[dict[str, Any]]:
    """Write every document in ``formats`` (plus signed RID) and the operator's lists; return the index."""
    index: list[dict[str, Any]] = []
    for r in docs.reports:
        base = out / r.recipient.id / r.incident_id
        files: dict[str, Path] = {}
        if "xml" in formats:
            files["xml"] = base.with_name(base.name + ".xml")
            _write(files["xml"], r.xml)
        if r.json is not None and "json" in formats:
            files["json"] = base.with_name(base.name + ".json")
            _write(files["json"], r.json)
        if r.rid_body is not None:
            files["rid"] = base.with_name(base.name + ".rid.xml")
            _write(files["rid"], r.rid_body)
        index.append(_index_row(r, files, out))
    _write(out / "reports.jsonl", _jsonl(index))
    unassigned = [w for w in docs.withheld if w.reason == "no-contact"]
    others = [w for w in docs.withheld if w.reason != "no-contact"]
    _write(out / "unassigned.jsonl", _jsonl([{"reason": w.reason, "directory": w.recipient,
                                              "event": dict(w.event)} for w in unassigned]))
    _write(out / "not-reported.jsonl", _jsonl([{"reason": w.reason, "recipient": w.recipient,
                                                "event": dict(w.event)} for w in others]))
    _write(out / "invalid.jsonl", _jsonl([{"source": e.source, "position": e.position, "reason": e.reason}
                                          for e in docs.invalid]))
    return index


def _index_row(r: OutgoingReport, files: dict[str, Path], out: Path) -> dict[str, Any]:
    c = r.contact
    return {
        "recipient": r.recipient.id,
        "organisation": c.organisation if c else None,
        "incident_id": r.incident_id,
        "kind": r.kind,
        "revision": r.revision,
        "period_start": iso_time(r.period_start_ns),
        "sources": list(r.sources),
        "channel": r.channel,
        "abuse_email": c.abuse_email if c else None,
        "rid_url": c.rid_url if c else None,
        "files": {k: str(v.relative_to(out)) for k, v in sorted(files.items())},
    }


def _settings(args: argparse.Namespace) -> ReporterSettings:
    table: dict[str, Any] = {}
    if args.config:
        table = cfg.load_toml(args.config).get("reporter", {})
    names = ("period_s", "redact", "formats", "darknet", "schemas_dir")
    overrides = {k: getattr(args, k, None) for k in names}
    return cfg.load(ReporterSettings, "reporter", table, None, overrides)


def _validate(docs: DocumentSet, schemas_dir: str) -> None:
    """With --schemas: every written document must be valid; a failure is our bug, so stop."""
    from lxml import etree

    schemas = load_schemas(schemas_dir, "--schemas")
    for r in docs.reports:
        pairs = [("IODEF", schemas.iodef, r.xml)] + ([("RID", schemas.rid, r.rid_body)] if r.rid_body else [])
        for what, schema, body in pairs:
            errors = schemas.errors(schema, etree.fromstring(body))
            if errors:
                raise ConfigError("--schemas", f"{what} document {r.incident_id} is invalid: {errors[0]}")


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    delivery_cmd.prepare(args, args.out)  # --send: bad delivery settings stop before any work
    if (args.sign_key is None) != (args.sign_cert is None):
        raise ConfigError("--sign-key", "give both --sign-key and --sign-cert, or neither")
    signer = SigningIdentity.load(args.sign_key, args.sign_cert) if args.sign_key else None
    contacts = load_contacts(args.contacts) if args.contacts else None
    source = "stdin" if str(args.events) == "-" else str(args.events)
    docs = build_documents(read_event_lines(args.events), contacts, settings, signer, source)
    for n, err in enumerate(docs.invalid):
        if n < MAX_LOGGED_INVALID:
            log.warning("skipped event: %s", err.line())
    if len(docs.invalid) > MAX_LOGGED_INVALID:
        log.warning("%d more invalid events skipped (all listed in invalid.jsonl)",
                    len(docs.invalid) - MAX_LOGGED_INVALID)
    if settings.schemas_dir:
        _validate(docs, settings.schemas_dir)
    write_documents(docs, args.out, settings.formats)
    # --send: the reports go through the durable outbox (reporter.delivery_cmd)
    sent = delivery_cmd.send_if_asked(args, docs.reports, settings.operator_name, args.out)
    recipients = {r.recipient.id for r in docs.reports}
    unassigned = sum(1 for r in docs.reports if not r.recipient.assigned)
    held = ", ".join(f"{k} {v}" for k, v in docs.withheld_counts().items() if k != "no-contact")
    print(
        f"report: {docs.events_read} events read, {len(docs.invalid)} invalid; "
        f"{len(docs.reports)} documents ({unassigned} unassigned) for {len(recipients)} recipients; "
        f"not reported: {held or 'none'} -> {args.out}"
    )
    if sent:
        print(sent)
    return 0
