"""Reports by e-mail, for networks without a RID endpoint: the IODEF attached, a readable summary.

Theory of operation (DOMAIN.md section 6; issue 4 "Delivery"): most abuse
desks (RFC 2142 mailboxes) read mail, and many feed it to tools (IntelMQ,
RTIR) that take the attachment. So the message is a short plain-text summary
a person can act on, plus the document as an attachment. Building the message
is pure (:func:`build_message`); the Message-ID is derived from the
IncidentID and recipient, so a resend after a broken connection carries the
same Message-ID and the desk's tools can drop the duplicate.

SMTP answers map onto the outbox's policy like HTTP ones do: a 5xx for the
recipient or the content is permanent (rejected, reason kept); 4xx, a broken
connection or a timeout is transient (retried with backoff). A refused
sender, failed STARTTLS or failed login is our configuration, not the
report's fault, so it is transient too and shows in the outbox's reasons.
"""

from __future__ import annotations

import email.utils
import hashlib
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from reporter.outbox import OutboxItem, Report
from reporter.transport import Outcome, OutcomeKind

__all__ = ["MailSender", "SmtpConfig", "build_message", "summary_text"]

#: plain-language name of each report kind, for the subject and the summary
KIND_TEXT = {
    "scan": "hosts in your network scanning the Internet",
    "backscatter": "hosts in your network under a denial-of-service attack (backscatter seen)",
    "spoofing": "traffic with addresses of your network as spoofed sources",
}
#: sources listed in the summary before the rest are only counted
MAX_LISTED_SOURCES = 25


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    mail_from: str = "telescope@example.net"
    starttls: bool = False
    context: ssl.SSLContext | None = None  # for STARTTLS; None means the system's default CAs
    user: str = ""
    password: str = ""
    timeout_s: float = 30.0


def summary_text(*, organisation: str, incident_id: str, kind: str, period: str, sources: Sequence[str],
                 operator: str, filename: str) -> str:
    """The human-readable part of a report mail (pure)."""
    what = KIND_TEXT.get(kind, f"{kind or 'incident'} reports")
    lines = [
        f"Hello {organisation or 'abuse team'},",
        "",
        f"our network telescope (darknet) saw {what}.",
        "A darknet is address space with no hosts: nothing there should receive traffic, so each",
        "source below either probed unused addresses or answered packets forged with its address.",
        "",
        f"Incident:      {incident_id}",
        f"Period (UTC):  {period}",
        f"Sources ({len(sources)}):",
    ]
    lines += [f"  {ip}" for ip in sources[:MAX_LISTED_SOURCES]]
    if len(sources) > MAX_LISTED_SOURCES:
        lines.append(f"  ... and {len(sources) - MAX_LISTED_SOURCES} more (all in the attachment)")
    lines += [
        "",
        f"The attached {filename} is an IODEF 2.0 document (RFC 7970) with the details: ports,",
        "packet counts, the scanning tool where it was recognised, and our confidence.",
        "A resend of the same incident keeps the same incident ID.",
        "",
        f"-- {operator}",
    ]
    return "\n".join(lines) + "\n"


def _message_id(report: Report, mail_from: str) -> str:
    domain = mail_from.rsplit("@", 1)[-1] or "localhost"
    # the content digest is in it: a resend of the same document keeps its Message-ID (receiving
    # systems drop the copy), an update of the incident gets its own (it must not be dropped as one)
    key = f"{report.incident_id}\x00{report.recipient}" + (f"\x00{report.digest}" if report.digest else "")
    token = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{token}@{domain}>"


def build_message(report: Report, mail_from: str, date: float, update: bool = False) -> EmailMessage:
    """The mail for one report: summary as text/plain, the document attached (pure).

    ``update``: the recipient already got an earlier version of this incident; the
    subject and the first line say so, so that it is filed with the first, not dropped.
    """
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = report.destination
    what = report.kind or "incident"
    msg["Subject"] = f"[darknet report] {'update, ' if update else ''}{what}: {report.incident_id}"
    msg["Date"] = email.utils.formatdate(date, usegmt=True)
    msg["Message-ID"] = _message_id(report, mail_from)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    text = report.summary or f"IODEF 2.0 report {report.incident_id} attached.\n"
    if update:
        text = (f"UPDATE: this replaces our earlier report of incident {report.incident_id}: "
                "more was seen since.\n\n" + text)
    msg.set_content(text)
    maintype, _, subtype = (report.media_type.split(";")[0].strip() or "application/xml").partition("/")
    if maintype == "text" and subtype == "xml":
        maintype = "application"  # attachments are for tools: application/xml, not inline text
    msg.add_attachment(report.body, maintype=maintype, subtype=subtype or "octet-stream",
                       filename=report.filename)
    return msg


def _classify(code: int, text: str) -> Outcome:
    kind = OutcomeKind.REJECTED if 500 <= code < 600 else OutcomeKind.TRANSIENT
    return Outcome(kind, f"SMTP {code} {text}"[:300], code)


def _text(raw: bytes | str) -> str:
    s = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(s.split())


class MailSender:
    """Sends reports of the ``email`` channel through one SMTP server."""

    channel = "email"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, item: OutboxItem, now: float) -> Outcome:
        cfg = self.config
        try:
            msg = build_message(item.report, cfg.mail_from, now, update=item.update)
        except (ValueError, TypeError) as exc:
            # e.g. a line break in the address from the contact table: no retry can fix this report
            return Outcome(OutcomeKind.REJECTED, f"cannot build the mail: {exc}")
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                smtp.ehlo()
                if cfg.starttls:
                    smtp.starttls(context=cfg.context or ssl.create_default_context())
                    smtp.ehlo()
                if cfg.user:
                    smtp.login(cfg.user, cfg.password)
                refused = smtp.send_message(msg, from_addr=cfg.mail_from, to_addrs=[item.report.destination])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
            return _classify(code, _text(text))
        except smtplib.SMTPDataError as exc:
            return _classify(exc.smtp_code, _text(exc.smtp_error))
        except smtplib.SMTPSenderRefused as exc:
            return Outcome(OutcomeKind.TRANSIENT, f"SMTP sender {cfg.mail_from} refused: {exc.smtp_code} "
                           f"{_text(exc.smtp_error)}", exc.smtp_code)
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome(OutcomeKind.TRANSIENT, f"SMTP server {cfg.host}: {exc}")
        except smtplib.SMTPResponseException as exc:
            return Outcome(OutcomeKind.TRANSIENT, f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}",
                           exc.smtp_code)
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            return Outcome(OutcomeKind.TRANSIENT, f"cannot send mail via {cfg.host}:{cfg.port}: {exc!r}")
        if refused:
            code, text = next(iter(refused.values()))
            return _classify(code, _text(text))
        return Outcome(OutcomeKind.DELIVERED, "", 250)
