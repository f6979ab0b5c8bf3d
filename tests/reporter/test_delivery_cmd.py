"""``darknet-iodef report --send`` end to end: RID receiver, SMTP server and spool, all on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from darknet_iodef.cli import main

from .conftest import EVENTS, events_jsonl
from .pki import Pki, make_pki
from .rid_peers import receiver_running
from .test_delivery import LATE, contacts_toml, free_port
from .test_mail import smtp_server

pytestmark = pytest.mark.timeout(120)


def test_report_send_delivers_by_every_channel_once(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pki: Pki = make_pki(tmp_path / "pki")
    port = free_port()
    (tmp_path / "contacts.toml").write_text(contacts_toml(port))
    (tmp_path / "events.jsonl").write_bytes(events_jsonl(EVENTS))
    outbox = tmp_path / "outbox.sqlite"
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], port=port) as srv, \
            smtp_server() as (box, smtp_port):
        argv = ["report", "--in", str(tmp_path / "events.jsonl"),
                "--contacts", str(tmp_path / "contacts.toml"),
                "--sign-key", str(pki.client.key_path), "--sign-cert", str(pki.client.cert_path),
                "--send", "--outbox", str(outbox),
                "--tls-cert", str(pki.client.cert_path), "--tls-key", str(pki.client.key_path),
                "--tls-ca", str(pki.ca.cert_path), "--tls-allow", pki.server.fingerprint,
                "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_port), "--spool", str(tmp_path / "spool")]
        assert main([*argv, "--out", str(tmp_path / "out1")]) == 0
        first = capsys.readouterr().out.splitlines()
        with sqlite3.connect(outbox) as db:
            rows = db.execute("SELECT channel, state, COUNT(*) FROM reports GROUP BY channel, state "
                              "ORDER BY channel").fetchall()
        channels = {c: n for c, state, n in rows if state == "sent"}
        assert {state for _, state, _ in rows} == {"sent"}
        assert set(channels) == {"rid", "email", "file"}
        assert srv.config.store.count() == channels["rid"]
        assert len(box.messages) == channels["email"]
        spool = tmp_path / "spool"
        spooled = sorted(p.relative_to(spool).parts[0] for p in spool.rglob("*.xml"))
        assert len(spooled) == channels["file"] and set(spooled) == {"unassigned"}
        total = sum(channels.values())
        assert first[-1].startswith(f"send: {total} queued (0 updates, 0 already in the outbox, 0 outdated); "
                                    f"{total} delivered, "
                                    "0 rejected, 0 to retry, 0 given up; outbox ")
        # the same events again (e.g. a cron rerun): the same IncidentIDs, nothing sent twice
        assert main([*argv, "--out", str(tmp_path / "out2")]) == 0
        assert capsys.readouterr().out.splitlines()[-1].startswith(
            f"send: 0 queued (0 updates, {total} already in the outbox, 0 outdated); 0 delivered")
        assert srv.config.store.count() == channels["rid"] and srv.stats["duplicate"] == 0
        assert len(box.messages) == channels["email"]


def test_report_send_needs_tls_for_rid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "contacts.toml").write_text(contacts_toml(4590))
    (tmp_path / "events.jsonl").write_bytes(events_jsonl(EVENTS))
    pki = make_pki(tmp_path / "pki")
    rc = main(["report", "--in", str(tmp_path / "events.jsonl"),
               "--contacts", str(tmp_path / "contacts.toml"),
               "--sign-key", str(pki.client.key_path), "--sign-cert", str(pki.client.cert_path),
               "--out", str(tmp_path / "out"), "--send"])
    assert rc == 2
    assert "--tls-cert: reports for RID endpoints need --tls-cert" in capsys.readouterr().err


def test_bad_delivery_settings_stop_before_any_document(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "events.jsonl").write_bytes(events_jsonl(EVENTS))
    pki = make_pki(tmp_path / "pki")
    base = ["report", "--in", str(tmp_path / "events.jsonl"), "--out", str(tmp_path / "out"), "--send"]
    tls = ["--tls-cert", str(pki.client.cert_path), "--tls-key", str(pki.client.key_path),
           "--tls-ca", str(pki.ca.cert_path)]
    cases = [
        (["--tls-cert", str(tmp_path / "missing.crt")], "tls_cert: "),
        ([*tls], "--tls-allow: no RID peer allowed"),
        ([*tls, "--tls-allow", "not-a-pin"], "neither a SHA-256 fingerprint nor a subject"),
        (["--smtp-port", "0"], "smtp_port"),
    ]
    for extra, why in cases:
        assert main([*base, *extra]) == 2, extra
        assert why in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_a_second_run_with_a_late_event_sends_one_update(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pki: Pki = make_pki(tmp_path / "pki")
    port = free_port()
    (tmp_path / "contacts.toml").write_text(contacts_toml(port))
    (tmp_path / "run1.jsonl").write_bytes(events_jsonl(EVENTS))
    (tmp_path / "run2.jsonl").write_bytes(events_jsonl([*EVENTS, LATE]))
    outbox = tmp_path / "outbox.sqlite"

    def run(events: str, out: str) -> str:
        argv = ["report", "--in", str(tmp_path / events), "--contacts", str(tmp_path / "contacts.toml"),
                "--sign-key", str(pki.client.key_path), "--sign-cert", str(pki.client.cert_path),
                "--send", "--outbox", str(outbox), "--out", str(tmp_path / out),
                "--tls-cert", str(pki.client.cert_path), "--tls-key", str(pki.client.key_path),
                "--tls-ca", str(pki.ca.cert_path), "--tls-allow", pki.server.fingerprint,
                "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_port)]
        assert main(argv) == 0
        return capsys.readouterr().out.splitlines()[-1]

    with receiver_running(tmp_path / "store", pki, [pki.client.subject], port=port) as srv, \
            smtp_server() as (box, smtp_port):
        line = run("run1.jsonl", "out1")
        total = int(line.split()[1])
        assert line.startswith(f"send: {total} queued (0 updates, 0 already in the outbox, 0 outdated); "
                               f"{total} delivered")
        stored, mails = srv.config.store.count(), len(box.messages)
        # the same events once more: nothing new
        assert run("run1.jsonl", "out1b").startswith(
            f"send: 0 queued (0 updates, {total} already in the outbox, 0 outdated); 0 delivered")
        # a late event in the period already reported: exactly one update, stored by the receiver
        assert run("run2.jsonl", "out2").startswith(
            f"send: 1 queued (1 updates, {total - 1} already in the outbox, 0 outdated); 1 delivered, "
            "0 rejected")
        assert srv.config.store.count() == stored + 1 and srv.stats["200"] == stored + 1
        assert len(box.messages) == mails
        # and replaying that second input: nothing
        assert run("run2.jsonl", "out2b").startswith(
            f"send: 0 queued (0 updates, {total} already in the outbox, 0 outdated); 0 delivered")
        assert srv.config.store.count() == stored + 1
    # the documents written say which version they are
    rows = [json.loads(x) for x in (tmp_path / "out2/reports.jsonl").read_text().splitlines()]
    assert sorted(r["revision"] for r in rows if r["recipient"] == "isp-a") == [1, 5]
    with sqlite3.connect(outbox) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT incident_id) FROM reports").fetchone() == (
            total + 1, total)


def test_a_file_that_is_no_outbox_stops_with_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "events.jsonl").write_bytes(events_jsonl(EVENTS))
    bad = tmp_path / "outbox.sqlite"
    bad.write_bytes(b"not a database" * 100)
    rc = main(["report", "--in", str(tmp_path / "events.jsonl"), "--out", str(tmp_path / "out"), "--send",
               "--outbox", str(bad), "--spool", str(tmp_path / "spool")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and str(bad) in err and "not a usable SQLite file" in err
    assert "Traceback" not in err
