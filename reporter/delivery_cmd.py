"""``darknet-iodef report --send``: the options and the run of delivery after documents are written.

The report command writes documents; with ``--send`` it also stores every
report that needs the network (RID endpoint or abuse mailbox; with
``--spool``, a directory per recipient too) in the durable outbox and drains
it (:mod:`reporter.delivery`). What cannot be delivered now stays queued and
goes out on the next ``--send`` run (or during ``--send-wait``), so running
the command from cron with a fixed ``--outbox`` gives retries across runs
and suppresses duplicates across runs.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import load, load_toml
from reporter.delivery import (
    DirectorySender,
    RidSender,
    Sender,
    enqueue,
    outbox_reports,
    run_delivery,
)
from reporter.delivery_settings import DeliverySettings
from reporter.documents import OutgoingReport
from reporter.mail import MailSender, SmtpConfig
from reporter.outbox import BackoffPolicy, Outbox
from reporter.tlsconfig import AllowList, client_context
from reporter.transport import RidTransport

__all__ = ["add_arguments", "delivery_settings", "prepare", "send_if_asked"]

log = logging.getLogger(__name__)

_FLAGS = ("outbox", "tls_cert", "tls_key", "tls_ca", "tls_allow", "smtp_host", "smtp_port", "smtp_starttls",
          "mail_from", "dir_root")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The delivery flags of ``report`` (settings also come from ``[delivery]`` in --config)."""
    g = p.add_argument_group("delivery (--send)")
    g.add_argument("--send", action="store_true",
                   help="deliver the reports: RID over HTTPS, e-mail, or --spool (through the outbox)")
    g.add_argument("--outbox", metavar="FILE",
                   help="SQLite outbox (default OUT/outbox.sqlite; use one fixed file across runs)")
    g.add_argument("--send-wait", dest="send_wait", type=float, default=0.0, metavar="SECONDS",
                   help="keep retrying failed deliveries this long (default 0: one round; the rest "
                        "stays queued for the next run)")
    g.add_argument("--tls-cert", dest="tls_cert", metavar="CERT", help="our client certificate (PEM)")
    g.add_argument("--tls-key", dest="tls_key", metavar="KEY", help="its private key (PEM)")
    g.add_argument("--tls-ca", dest="tls_ca", metavar="CA", help="CA bundle for peers' server certificates")
    g.add_argument("--tls-allow", dest="tls_allow", action="append", metavar="PEER",
                   help="peer allowed: SHA-256 fingerprint or subject (CN=...); repeat for more")
    g.add_argument("--smtp-host", dest="smtp_host", metavar="HOST", help="SMTP server (default localhost)")
    g.add_argument("--smtp-port", dest="smtp_port", type=int, metavar="PORT", help="SMTP port (default 25)")
    g.add_argument("--smtp-starttls", dest="smtp_starttls", action="store_const", const=True, default=None,
                   help="require STARTTLS")
    g.add_argument("--mail-from", dest="mail_from", metavar="ADDR", help="From: of report mails")
    g.add_argument("--spool", dest="dir_root", metavar="DIR",
                   help="also deliver reports of recipients without RID or e-mail into DIR/<recipient>/")


def delivery_settings(args: argparse.Namespace, out: Path) -> DeliverySettings:
    config = getattr(args, "config", None)
    table: dict[str, Any] = load_toml(config).get("delivery", {}) if config else {}
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k in _FLAGS}
    if overrides["tls_allow"] is not None:
        overrides["tls_allow"] = tuple(overrides["tls_allow"])
    if overrides["outbox"] is None and "outbox" not in table:
        overrides["outbox"] = str(out / "outbox.sqlite")
    return load(DeliverySettings, "delivery", table, overrides=overrides)


def _senders(s: DeliverySettings, channels: set[str]) -> tuple[dict[str, Sender], list[RidTransport]]:
    senders: dict[str, Sender] = {}
    transports: list[RidTransport] = []
    if "rid" in channels:
        ctx = client_context(s.tls_cert or None, s.tls_key or None, s.tls_ca or None, s.check_hostname)
        transport = RidTransport(ctx, AllowList.parse(s.tls_allow, "[delivery] tls_allow"),
                                 timeout_s=s.timeout_s, deadline_s=s.deadline_s)
        transports.append(transport)
        senders["rid"] = RidSender(transport)
    if "email" in channels:
        senders["email"] = MailSender(SmtpConfig(
            host=s.smtp_host, port=s.smtp_port, mail_from=s.mail_from, starttls=s.smtp_starttls,
            context=_smtp_context(s), user=s.smtp_user, password=s.smtp_password,
            timeout_s=s.timeout_s))
    if "file" in channels:
        senders["file"] = DirectorySender(s.dir_root)
    return senders, transports


def _smtp_context(s: DeliverySettings) -> ssl.SSLContext | None:
    if not s.smtp_starttls:
        return None
    ctx = ssl.create_default_context(cafile=s.smtp_ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def prepare(args: argparse.Namespace, out: Path) -> DeliverySettings | None:
    """With ``--send``: load and check the delivery settings and files before any work is done.

    Certificates, keys, CA files and the allow-list are loaded once here, so a
    typo stops the command (exit 2) before documents are written.
    """
    if not getattr(args, "send", False):
        return None
    s = delivery_settings(args, out)
    if s.tls_cert or s.tls_key or s.tls_ca or s.tls_allow:
        client_context(s.tls_cert or None, s.tls_key or None, s.tls_ca or None, s.check_hostname)
        if not AllowList.parse(s.tls_allow, "[delivery] tls_allow"):
            raise ConfigError("--tls-allow", "no RID peer allowed; RFC 6546 requires an explicit allow-list")
    try:
        _smtp_context(s)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("[delivery] smtp_ca", f"cannot load {s.smtp_ca}: {exc}") from None
    return s


def send_if_asked(args: argparse.Namespace, reports: Sequence[OutgoingReport], operator: str,
                  out: Path) -> str | None:
    """With ``--send``: enqueue ``reports`` and drain the outbox; a one-line summary (None without)."""
    if not getattr(args, "send", False):
        return None
    s = delivery_settings(args, out)
    unsigned = sum(1 for r in reports if r.contact is not None and r.contact.format == "rid"
                   and r.contact.rid_url and r.rid_body is None)
    if unsigned:
        log.warning("%d reports are for RID endpoints but no --sign-key was given; they go by e-mail "
                    "(or stay as files) instead", unsigned)
    wanted = ("rid", "email", "file") if s.dir_root else ("rid", "email")
    entries = outbox_reports(reports, operator=operator, channels=wanted)
    policy = BackoffPolicy(s.backoff_base_s, s.backoff_cap_s, s.give_up_after_s)
    with Outbox(s.outbox, policy) as ob:
        channels = {e.channel for e in entries} | ob.queued_channels()
        if "rid" in channels and not s.tls_cert:
            raise ConfigError("--tls-cert", "reports for RID endpoints need --tls-cert, --tls-key, --tls-ca "
                                            "and --tls-allow")
        senders, transports = _senders(s, channels)
        try:
            added = enqueue(ob, entries, time.time())
            stats = run_delivery(ob, senders, max_wait_s=max(0.0, float(args.send_wait)), limit=s.batch)
        finally:
            for t in transports:
                t.close()
        pruned = ob.prune(time.time() - s.keep_sent_s)
        if pruned:
            log.info("dropped the bodies of %d reports delivered more than %g days ago", pruned,
                     s.keep_sent_s / 86400)
        counts = ob.counts()
    line = (f"send: {added.added} queued ({added.updates} updates, {added.duplicates} already in the outbox, "
            f"{added.outdated} outdated); "
            f"{stats.delivered} delivered, {stats.rejected} rejected, {stats.retrying} to retry, "
            f"{stats.failed} given up; outbox {s.outbox}: "
            + ", ".join(f"{st.value} {n}" for st, n in counts.items()))
    if stats.rejected or stats.failed:
        log.warning("some reports were refused or given up; see the outbox's last_error column")
    return line
