"""Reports by e-mail against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from reporter.delivery import DeliveryStats, deliver_due, enqueue
from reporter.mail import MailSender, SmtpConfig, build_message, summary_text
from reporter.outbox import Outbox, OutboxItem, Report, State
from reporter.transport import OutcomeKind

from .pki import make_pki

pytestmark = pytest.mark.timeout(60)
T0 = 1_709_254_800.0  # 2024-03-01T01:00:00Z


class Mailbox:
    """aiosmtpd handler: keeps messages; refuses some recipients like a real MTA would."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("greylisted@"):
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(**kwargs: Any) -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    ctl.start()
    try:
        yield box, port
    finally:
        ctl.stop()


SOURCES = ("192.0.2.10", "192.0.2.77")


def report(n: int, to: str = "abuse@isp.example") -> Report:
    filename = f"inc-{n}.xml"
    summary = summary_text(organisation="Example ISP", incident_id=f"inc-{n}", kind="scan",
                           period="2024-03-01T00:00:00Z", sources=SOURCES, operator="Example Telescope",
                           filename=filename)
    return Report(f"inc-{n}", "isp-a", "email", to, b"<?xml version='1.0'?><IODEF-Document/>",
                  "application/xml", filename, "scan", summary)


def test_summary_text() -> None:
    text = summary_text(organisation="Example ISP", incident_id="inc-1", kind="backscatter",
                        period="2024-03-01T00:00:00Z", sources=[f"192.0.2.{i}" for i in range(30)],
                        operator="Example Telescope", filename="inc-1.xml")
    lines = text.splitlines()
    assert lines[0] == "Hello Example ISP,"
    assert "under a denial-of-service attack" in lines[2]
    assert "Incident:      inc-1" in lines and "Period (UTC):  2024-03-01T00:00:00Z" in lines
    assert "Sources (30):" in lines and "  192.0.2.24" in lines and "  192.0.2.25" not in lines
    assert "  ... and 5 more (all in the attachment)" in lines
    assert lines[-1] == "-- Example Telescope"


def test_message_headers() -> None:
    msg = build_message(report(1), "telescope@example.net", T0)
    again = build_message(report(1), "telescope@example.net", T0 + 3600)
    assert msg["Message-ID"] == again["Message-ID"]  # a resend is recognisable
    assert msg["Message-ID"].endswith("@example.net>")
    assert (msg["From"], msg["To"], msg["Subject"]) == (
        "telescope@example.net", "abuse@isp.example", "[darknet report] scan: inc-1")
    assert msg["Date"] == "Fri, 01 Mar 2024 01:00:00 +0000"
    assert msg["Auto-Submitted"] == "auto-generated"
    upd = build_message(report(1), "telescope@example.net", T0, update=True)
    assert upd["Subject"] == "[darknet report] update, scan: inc-1"
    assert upd.get_body(("plain",)).get_content().startswith("UPDATE: this replaces our earlier report")


def test_a_header_injection_in_the_address_is_rejected_not_sent() -> None:
    item = OutboxItem(1, report(1, "abuse@isp.example\r\nBcc: everyone@example.org"), State.QUEUED, 0, T0, T0,
                      None, None, None, "")
    o = MailSender(SmtpConfig(host="127.0.0.1", port=free_port(), timeout_s=1)).send(item, T0)
    assert o.kind is OutcomeKind.REJECTED and o.reason.startswith("cannot build the mail: ")


def test_mail_arrives_with_iodef_attached_and_readable_summary(tmp_path: Path) -> None:
    with smtp_server() as (box, port), Outbox(tmp_path / "o.sqlite") as ob:
        sender = MailSender(SmtpConfig(host="127.0.0.1", port=port, mail_from="telescope@example.net",
                                       timeout_s=10))
        enqueue(ob, [report(1), report(2, "nobody@isp.example"), report(3, "greylisted@isp.example"),
                     report(4, "abuse@other.example")], T0)
        stats = deliver_due(ob, {"email": sender}, T0)
        # greylisting one mailbox does not hold back the next one
        assert stats == DeliveryStats(4, 2, 1, 1, 0)
        env, other = box.messages
        assert other.rcpt_tos == ["abuse@other.example"]
        assert env.mail_from == "telescope@example.net" and env.rcpt_tos == ["abuse@isp.example"]
        msg = email.message_from_bytes(env.content, policy=email.policy.default)
        assert msg["Subject"] == "[darknet report] scan: inc-1"
        body = msg.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "Incident:      inc-1" in text and "  192.0.2.10" in text and "IODEF 2.0" in text
        (att,) = list(msg.iter_attachments())
        assert att.get_filename() == "inc-1.xml"
        assert att.get_content_type() == "application/xml"
        assert att.get_payload(decode=True) == b"<?xml version='1.0'?><IODEF-Document/>"
        reasons = {i.report.incident_id: (i.state, i.last_status, i.last_error) for i in ob.items()}
        assert reasons["inc-2"] == (State.REJECTED, 550, "SMTP 550 5.1.1 no such mailbox")
        assert reasons["inc-3"] == (State.QUEUED, 451, "SMTP 451 4.7.1 greylisted, try again later")


def test_starttls_and_failures(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server.cert_path, pki.server.key_path)
    client_ctx = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    item = OutboxItem(1, report(1), State.QUEUED, 0, T0, T0, None, None, None, "")
    with smtp_server(tls_context=server_ctx, require_starttls=True) as (box, port):
        ok = MailSender(SmtpConfig(host="127.0.0.1", port=port, starttls=True, context=client_ctx,
                                   timeout_s=10))
        assert ok.send(item, T0).kind is OutcomeKind.DELIVERED
        assert len(box.messages) == 1
        # without STARTTLS this server refuses to take mail: our side is misconfigured, retry later
        plain = MailSender(SmtpConfig(host="127.0.0.1", port=port, timeout_s=10))
        assert plain.send(item, T0).kind is OutcomeKind.TRANSIENT
        # a server certificate we do not trust: no mail leaves
        untrusting = MailSender(SmtpConfig(host="127.0.0.1", port=port, starttls=True,
                                           context=ssl.create_default_context(), timeout_s=10))
        o = untrusting.send(item, T0)
        assert o.kind is OutcomeKind.TRANSIENT and "CERTIFICATE_VERIFY_FAILED" in o.reason
        assert len(box.messages) == 1
    down = MailSender(SmtpConfig(host="127.0.0.1", port=free_port(), timeout_s=5))
    o = down.send(item, T0)
    assert o.kind is OutcomeKind.TRANSIENT and "ConnectionRefusedError" in o.reason


def test_login_after_starttls(tmp_path: Path) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"telescope", b"s3cret")
        return AuthResult(success=ok)

    pki = make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server.cert_path, pki.server.key_path)
    client_ctx = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    item = OutboxItem(1, report(1), State.QUEUED, 0, T0, T0, None, None, None, "")
    with smtp_server(tls_context=server_ctx, require_starttls=True, authenticator=authenticator,
                     auth_required=True) as (box, port):
        good = SmtpConfig(host="127.0.0.1", port=port, starttls=True, context=client_ctx, user="telescope",
                          password="s3cret", timeout_s=10)
        assert MailSender(good).send(item, T0).kind is OutcomeKind.DELIVERED
        # without the login the server refuses the sender: our setting, so transient with the reason
        anonymous = SmtpConfig(host="127.0.0.1", port=port, starttls=True, context=client_ctx, timeout_s=10)
        o = MailSender(anonymous).send(item, T0)
        assert (o.kind, o.status) == (OutcomeKind.TRANSIENT, 530)
        assert "Authentication required" in o.reason
        assert len(box.messages) == 1
