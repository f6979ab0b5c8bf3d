"""The RID receiver on 127.0.0.1 with real certificates: what it accepts, stores and refuses.

Every hostile case is followed by a valid report from the same or another
client, which must still be accepted: refusing must not harm the server.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from prometheus_client import REGISTRY

from darknet_iodef.errors import ConfigError
from reporter.iodef import IODEF_NS, build_iodef
from reporter.receiver import Refusal, RidServer, check_request
from reporter.rid import SigningIdentity, build_report
from reporter.schemas import load_schemas
from reporter.settings import ReporterSettings

from .conftest import EVENTS
from .pki import Identity, Pki, issue, make_ca, make_pki
from .rid_peers import SignedReport, receiver_running, signed_reports

pytestmark = pytest.mark.timeout(120)

SETTINGS = ReporterSettings(operator_name="Example Telescope", operator_email="telescope@example.net",
                            incident_name="telescope.example.net", darknet="198.18.0.0/15,2001:db8:ffff::/48")
LIMIT = 1 << 20  # the receivers in these tests accept at most 1 MiB


# -- the pure decision on a request's head ------------------------------------------------------

XML = {"Content-Type": "text/xml", "Content-Length": "100"}


@pytest.mark.parametrize(("method", "path", "headers", "allowed", "expected"), [
    ("POST", "/", XML, True, None),
    ("POST", "/", {"Content-Type": "text/xml; charset=utf-8", "Content-Length": "100"}, True, None),
    ("POST", "/", {"Content-Type": "TEXT/XML", "Transfer-Encoding": "chunked"}, True, None),
    ("POST", "/", XML, False, 403),
    ("GET", "/", {}, False, 403),
    ("GET", "/", {}, True, 405),
    ("HEAD", "/", {}, True, 405),
    ("PUT", "/", XML, True, 405),
    ("GET", "/index.html", {}, True, 404),
    ("POST", "/rid", XML, True, 404),
    ("POST", "/", {"Content-Type": "application/xml", "Content-Length": "100"}, True, 415),
    ("POST", "/", {"Content-Length": "100"}, True, 415),
    ("POST", "/", {"Content-Type": "text/xml"}, True, 411),
    ("POST", "/", {"Content-Type": "text/xml", "Content-Length": "-1"}, True, 400),
    ("POST", "/", {"Content-Type": "text/xml", "Content-Length": "10, 10"}, True, 400),
    # "²".isdigit() is true, int("²") fails
    ("POST", "/", {"Content-Type": "text/xml", "Content-Length": "\u00b2"}, True, 400),
    ("POST", "/", {"Content-Type": "text/xml", "Content-Length": "9" * 40}, True, 400),
    ("POST", "/", {"Content-Type": "text/xml", "Content-Length": str(LIMIT + 1)}, True, 413),
    ("POST", "/", {"Content-Type": "text/xml", "Content-Length": str(LIMIT)}, True, None),
    ("POST", "/", {"Content-Type": "text/xml", "Transfer-Encoding": "gzip"}, True, 501),
    ("POST", "/", {"Content-Type": "text/xml", "Transfer-Encoding": "chunked", "Content-Length": "5"},
     True, 400),
])
def test_check_request(method: str, path: str, headers: dict[str, str], allowed: bool,
                       expected: int | None) -> None:
    r = check_request(method, path, headers, allowed, LIMIT)
    assert (r.status if r else None) == expected
    if expected == 405:
        assert r == Refusal(405, "RID messages are sent with POST (RFC 6546)", allow="POST")


# -- a real receiver ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("receiver-pki"))


@pytest.fixture(scope="module")
def reports(pki: Pki) -> list[SignedReport]:
    return signed_reports(SETTINGS, pki.client)


@pytest.fixture
def server(tmp_path: Path, pki: Pki) -> Iterator[RidServer]:
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], max_body_bytes=LIMIT,
                          request_timeout_s=2.0, max_connections=4) as srv:
        yield srv


def context(pki: Pki, ident: Identity | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    if ident is not None:
        ctx.load_cert_chain(ident.cert_path, ident.key_path)
    return ctx


def request(srv: RidServer, pki: Pki, body: bytes | None, *, ident: Identity | None = None,
            method: str = "POST", path: str = "/", ctype: str = "text/xml",
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", srv.server_address[1], timeout=10,
                                       context=context(pki, ident or pki.client))
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def accepted(srv: RidServer, pki: Pki, rep: SignedReport) -> None:
    """The server still works: a valid report is answered 200 with an empty text/xml body."""
    status, headers, body = request(srv, pki, rep.body)
    assert (status, body, headers["content-type"], headers["content-length"]) == (200, b"", "text/xml", "0")


def test_valid_report_is_verified_and_stored(server: RidServer, pki: Pki,
                                             reports: list[SignedReport]) -> None:
    for rep in reports:
        accepted(server, pki, rep)
    store = server.config.store
    rows = store.reports()
    assert [r.incident_id for r in rows] == [r.incident_id for r in reports]
    first = rows[0]
    assert (first.incident_name, first.sender_subject, first.sender_fingerprint, first.msg_type,
            first.purpose) == ("telescope.example.net", pki.client.subject, pki.client.fingerprint, "Report",
                               "reporting")
    kinds = {r.kind for r in rows}
    assert "takeover-system" in kinds and any(k.startswith("availability-") for k in kinds)
    # the signed message is kept byte for byte, the IODEF document beside it
    assert (store.root / first.rid_path).read_bytes() == reports[0].body
    assert first.body_bytes == len(reports[0].body)
    doc = etree.fromstring((store.root / first.iodef_path).read_bytes())
    assert doc.tag == f"{{{IODEF_NS}}}IODEF-Document"
    assert doc.findtext(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}IncidentID") == first.incident_id
    assert first.iodef_bytes == len((store.root / first.iodef_path).read_bytes())
    modes = {p.stat().st_mode & 0o777 for p in (store.root / "index.sqlite", store.root / first.rid_path,
                                                 store.root / first.iodef_path)}
    assert modes == {0o600}
    # a resend is acknowledged and not stored twice (sending is idempotent, RFC 6546),
    # also when the sender signed the same report again (new ECDSA signature bytes)
    accepted(server, pki, reports[0])
    resigned = signed_reports(SETTINGS, pki.client)[0]
    assert resigned.incident_id == reports[0].incident_id and resigned.body != reports[0].body
    accepted(server, pki, resigned)
    assert store.count() == len(reports)
    assert (server.stats["stored"], server.stats["duplicate"]) == (len(reports), 2)
    # another document under the same IncidentID (a corrected report) is kept beside the first
    root = _iodef()
    root.find(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}GenerationTime").text = "2024-03-01T02:00:00Z"
    accepted(server, pki, SignedReport(reports[0].incident_id, _signed(root, pki)))
    rows = store.reports()
    assert [r.incident_id for r in rows].count(reports[0].incident_id) == 2
    assert rows[-1].iodef_sha256 != rows[0].iodef_sha256


def test_methods_paths_and_content_type(server: RidServer, pki: Pki, reports: list[SignedReport]) -> None:
    status, headers, body = request(server, pki, None, method="GET", ctype="")
    assert (status, headers["allow"]) == (405, "POST")
    status, headers, _ = request(server, pki, None, method="HEAD", ctype="")
    assert (status, headers["allow"]) == (405, "POST")
    assert request(server, pki, reports[0].body, path="/rid")[0] == 404
    assert request(server, pki, None, method="GET", path="/etc/passwd", ctype="")[0] == 404
    status, headers, body = request(server, pki, reports[0].body, ctype="application/xml")
    assert (status, body) == (415, b"Content-Type must be text/xml (RFC 6546), not 'application/xml'\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert request(server, pki, b"", method="DELETE", ctype="")[0] == 405
    assert server.config.store.count() == 0
    accepted(server, pki, reports[0])


def test_clients_with_wrong_certificates_are_refused(server: RidServer, pki: Pki, tmp_path: Path,
                                                     reports: list[SignedReport]) -> None:
    # same CA, but not on the allow-list: 403 before the body is looked at
    outsider = issue(pki.ca, tmp_path, "outsider", client=True)
    status, _, body = request(server, pki, reports[0].body, ident=outsider)
    assert (status, body) == (403, b"your certificate is not on this receiver's allow-list\n")
    # another CA (with the allowed subject even): the TLS handshake fails
    rogue_ca = make_ca(tmp_path, "Rogue CA")
    rogue = issue(rogue_ca, tmp_path / "rogue", "rid-client", client=True)
    assert rogue.subject == pki.client.subject
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        request(server, pki, reports[0].body, ident=rogue)
    # the right CA and subject on the allow-list, but a certificate for servers only (EKU serverAuth)
    wrong_use = issue(pki.ca, tmp_path / "eku", "rid-client", server=True)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        request(server, pki, reports[0].body, ident=wrong_use)
    # no client certificate at all
    conn = http.client.HTTPSConnection("127.0.0.1", server.server_address[1], timeout=10,
                                       context=context(pki, None))
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        conn.request("POST", "/", body=reports[0].body, headers={"Content-Type": "text/xml"})
        conn.getresponse()
    conn.close()
    assert server.config.store.count() == 0
    # the server thread counts a failed handshake after the client has seen it fail
    deadline = time.monotonic() + 10
    while server.stats["refused_tls"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats["refused_tls"] == 3
    accepted(server, pki, reports[0])


def _tampered(body: bytes, incident_id: str) -> bytes:
    return body.replace(incident_id.encode(), (incident_id[:-1] + "0").encode(), 1)


def _signed(root: etree._Element, pki: Pki) -> bytes:
    iid = root.findtext(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}IncidentID") or ""
    return build_report(root, incident_id=iid, incident_name="telescope.example.net", tlp="amber",
                        signer=SigningIdentity.load(pki.client.key_path, pki.client.cert_path))


def _iodef() -> etree._Element:
    from reporter.grouping import group_events, parse_reportable

    groups, _ = group_events([parse_reportable(e) for e in EVENTS], None, SETTINGS)
    return build_iodef(groups[0], SETTINGS)


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b']><RID xmlns="urn:ietf:params:xml:ns:iodef-rid-2.0">&lol9;</RID>')
XXE = (b'<?xml version="1.0"?><!DOCTYPE RID [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       b'<RID xmlns="urn:ietf:params:xml:ns:iodef-rid-2.0">&xxe;</RID>')
XXE_NET = (b'<?xml version="1.0"?><!DOCTYPE RID SYSTEM "http://127.0.0.1:9/rid.dtd">'
           b'<RID xmlns="urn:ietf:params:xml:ns:iodef-rid-2.0"/>')
DEEP = b"<a>" * 5000 + b"</a>" * 5000


def test_hostile_and_invalid_bodies_are_refused(server: RidServer, pki: Pki,
                                                reports: list[SignedReport]) -> None:
    rep = reports[0]
    no_contact = _iodef()
    for c in no_contact.iter(f"{{{IODEF_NS}}}Contact"):
        c.getparent().remove(c)
    cases = {
        "xxe": (XXE, "document type declarations are refused (found <!DOCTYPE)"),
        "xxe-network": (XXE_NET, "document type declarations are refused (found <!DOCTYPE)"),
        "billion-laughs": (BILLION_LAUGHS, "document type declarations are refused (found <!DOCTYPE)"),
        "deep": (DEEP, "not well-formed XML"),
        "garbage": (b"\x00\xff" * 100, "not well-formed XML"),
        "utf-16": ("<RID/>".encode("utf-16"), "only UTF-8 documents are accepted"),
        "tampered": (_tampered(rep.body, rep.incident_id), "digest mismatch"),
        "unsigned": (build_report(_iodef(), incident_id=rep.incident_id,
                                  incident_name="telescope.example.net", tlp="amber", signer=None),
                     "unsigned: RFC 6545 requires an enveloped XML signature"),
        "no-contact": (_signed(no_contact, pki), "Contact missing"),
    }
    for name, (body, why) in cases.items():
        status, _, answer = request(server, pki, body)
        assert status == 400, name
        assert why in answer.decode(), (name, answer)
    assert server.config.store.count() == 0
    assert server.stats["400"] == len(cases)
    accepted(server, pki, rep)


def test_signature_by_an_untrusted_key_is_refused(tmp_path: Path, pki: Pki,
                                                  reports: list[SignedReport]) -> None:
    # the TLS client is allowed, but the XML signature is by a key the receiver does not trust
    other = make_pki(tmp_path / "other")
    foreign = signed_reports(SETTINGS, other.client)[0]
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], trusted=[pki.client.cert]) as srv:
        status, _, answer = request(srv, pki, foreign.body)
        assert status == 400 and b"signature refused" in answer
        accepted(srv, pki, reports[0])


def test_schema_invalid_document_is_refused(tmp_path: Path, pki: Pki, shared_schemas: Path,
                                            reports: list[SignedReport]) -> None:
    root = _iodef()
    root.find(f"{{{IODEF_NS}}}Incident").set("purpose", "gossip")
    body = _signed(root, pki)
    with receiver_running(tmp_path / "store", pki, [pki.client.fingerprint],
                          schemas=load_schemas(shared_schemas)) as srv:
        status, _, answer = request(srv, pki, body)
        assert status == 400
        assert b"invalid document" in answer and b"gossip" in answer
        accepted(srv, pki, reports[0])
        assert srv.config.store.count() == 1


def _tls(srv: RidServer, pki: Pki) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10)
    return context(pki, pki.client).wrap_socket(raw, server_hostname="127.0.0.1")


def _answer(sock: ssl.SSLSocket) -> bytes:
    """Everything the server says until it closes (bounded: 64 KiB, the socket timeout)."""
    data = b""
    try:
        while len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"


def test_100_mb_bodies_are_refused_while_reading(server: RidServer, pki: Pki,
                                                 reports: list[SignedReport]) -> None:
    metric = ("darknet_receiver_refused_reports_total", {"reason": "too-large"})
    refused = REGISTRY.get_sample_value(*metric) or 0
    # announced: refused from the head, not a byte of the body read
    with _tls(server, pki) as s:
        s.sendall(HEAD + b"Content-Length: 104857600\r\n\r\n")
        answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b"message of 104857600 bytes exceeds the limit of 1048576\n")
    # asked first (Expect: 100-continue): refused instead of "100 Continue"
    with _tls(server, pki) as s:
        s.sendall(HEAD + b"Content-Length: 104857600\r\nExpect: 100-continue\r\n\r\n")
        answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
    # chunked: the size is known only while reading; the server stops at the limit
    sent = 0
    chunk = b"%x\r\n" % 65536 + b"<" * 65536 + b"\r\n"
    with _tls(server, pki) as s:
        s.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 100 * 1024 * 1024:
                s.sendall(chunk)
                sent += 65536
        except OSError:
            pass  # the server closed after its answer: what we wanted
        answer = _answer(s)
    assert sent < 100 * 1024 * 1024
    assert server.stats["413"] == 3
    assert REGISTRY.get_sample_value(*metric) == refused + 3
    if answer:  # the answer may be lost to the reset that the unread rest of the body causes
        assert answer.startswith(b"HTTP/1.1 413 ")
    accepted(server, pki, reports[0])


def test_slow_and_idle_clients_are_cut(server: RidServer, pki: Pki, reports: list[SignedReport]) -> None:
    # headers that never end, a body shorter than announced, and connections that only hold a slot
    slow = _tls(server, pki)
    slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    short = _tls(server, pki)
    short.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 500\r\n\r\n<RID")
    idle = _tls(server, pki)
    silent = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)  # no ClientHello
    # all 4 slots are taken now; the server cuts each one at its 2 s deadline
    for s in (slow, short, idle, silent):
        assert _answer(s) == b""  # type: ignore[arg-type]
        s.close()
    assert server.stats["refused_timeout"] >= 4
    accepted(server, pki, reports[0])


def test_receiver_command_serves_and_stops_on_sigterm(tmp_path: Path, pki: Pki,
                                                      reports: list[SignedReport]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "store"
    cmd = [sys.executable, "-c", "import sys; from darknet_iodef.cli import main; sys.exit(main())",
           "receiver", "--listen", f"127.0.0.1:{port}", "--cert", str(pki.server.cert_path),
           "--key", str(pki.server.key_path), "--client-ca", str(pki.ca.cert_path),
           "--allow", pki.client.fingerprint, "--store", str(store)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        ctx = context(pki, pki.client)
        give_up = time.monotonic() + 60  # a loaded 2-core machine imports slowly
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
                conn.request("POST", "/", body=reports[0].body, headers={"Content-Type": "text/xml"})
                status = conn.getresponse().status
                conn.close()
                break
            except ConnectionRefusedError:
                if proc.poll() is not None:
                    pytest.fail(f"the receiver exited: {proc.communicate()[1].decode()[-2000:]}")
                if time.monotonic() > give_up:
                    pytest.fail("the receiver did not start within 60 s")
                time.sleep(0.1)
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err.decode()
    assert b"RID receiver stopped" in err
    import sqlite3

    with sqlite3.connect(store / "index.sqlite") as db:
        assert db.execute("SELECT incident_id FROM received").fetchall() == [(reports[0].incident_id,)]


def test_receiver_command_refuses_bad_settings(tmp_path: Path, pki: Pki) -> None:
    from darknet_iodef.cli import main

    base = ["receiver", "--cert", str(pki.server.cert_path), "--key", str(pki.server.key_path),
            "--client-ca", str(pki.ca.cert_path), "--store", str(tmp_path / "s")]
    assert main([*base, "--listen", "127.0.0.1:0"]) == 2  # no --allow
    assert main([*base, "--allow", "CN=x", "--listen", "nowhere"]) == 2
    assert main([*base, "--allow", "abc"]) == 2


def test_receiver_settings_from_toml_environment_and_flags(tmp_path: Path) -> None:
    from darknet_iodef.cli import build_parser
    from reporter.receiver_cmd import _settings

    cfg = tmp_path / "rid.toml"
    cfg.write_text('[receiver]\nlisten = "127.0.0.1:4591"\nallow = ["CN=a,O=b", "CN=c"]\n'
                   'max_connections = 8\nstore = "/srv/rid"\n')
    args = build_parser().parse_args(["receiver", "--config", str(cfg), "--listen", "[::1]:4592",
                                      "--allow", "CN=z"])
    s = _settings(args)
    assert (s.listen, s.allow, s.max_connections, s.store, s.max_body_bytes) == (
        "[::1]:4592", ("CN=z",), 8, "/srv/rid", 16 * 1024 * 1024)
    cfg.write_text('[receiver]\nmax_connections = 0\n')
    with pytest.raises(ConfigError, match=r"\[receiver\] max_connections"):
        _settings(build_parser().parse_args(["receiver", "--config", str(cfg)]))
    cfg.write_text('[receiver]\nlisten_port = 1\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        _settings(build_parser().parse_args(["receiver", "--config", str(cfg)]))


def test_mutated_requests_never_break_the_server(tmp_path: Path, pki: Pki,
                                                 reports: list[SignedReport]) -> None:
    """Seeded byte mutations of a valid request: every answer is a 2xx/4xx/501 or a close, never a 500."""
    import random

    rng = random.Random(6546)
    body = reports[1].body
    valid = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
             b"Content-Length: %d\r\n\r\n" % len(body)) + body
    statuses: list[int] = []
    closed = 0
    # a short deadline: a mutated Content-Length larger than the body waits for it
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], request_timeout_s=0.5) as srv:
        for _ in range(60):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(len(data)) if rng.random() < 0.5 else rng.randrange(120)
                data[pos] = rng.randrange(256)
            with _tls(srv, pki) as s:
                s.sendall(bytes(data))
                resp = http.client.HTTPResponse(s)
                try:
                    resp.begin()
                    statuses.append(resp.status)
                except (http.client.HTTPException, OSError):
                    closed += 1
        assert len(statuses) > closed
        assert set(statuses) <= {200, 400, 404, 405, 411, 413, 415, 431, 501}, statuses
        assert srv.stats["500"] == 0
        accepted(srv, pki, reports[0])


def test_receiver_on_ipv6_loopback(tmp_path: Path, pki: Pki, reports: list[SignedReport]) -> None:
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 in this environment")
    from reporter.delivery_settings import ReceiverSettings
    from reporter.receiver_cmd import build_server

    v6 = issue(pki.ca, tmp_path, "rid-server-v6", server=True, ips=("::1",))
    srv = build_server(ReceiverSettings(listen="[::1]:0", cert=str(v6.cert_path), key=str(v6.key_path),
                                        client_ca=str(pki.ca.cert_path), allow=(pki.client.subject,),
                                        store=str(tmp_path / "store")))
    import threading

    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        conn = http.client.HTTPSConnection("::1", srv.server_address[1], timeout=10,
                                           context=context(pki, pki.client))
        conn.request("POST", "/", body=reports[0].body, headers={"Content-Type": "text/xml"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.shutdown()
        srv.server_close()
        srv.config.store.close()
        t.join(5)
    assert srv.stats["stored"] == 1


def test_concurrent_senders_store_each_report_once(server: RidServer, pki: Pki,
                                                  reports: list[SignedReport]) -> None:
    """Every report sent twice at the same time on separate connections: stored once, answered 200 twice."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [r for r in reports for _ in range(2)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # the fixture's receiver serves 4 at once
        statuses = list(pool.map(lambda r: request(server, pki, r.body)[0], jobs))
    assert statuses == [200] * len(jobs)
    rows = server.config.store.reports()
    assert sorted(r.incident_id for r in rows) == sorted(r.incident_id for r in reports)
    assert (server.stats["stored"], server.stats["duplicate"]) == (len(reports), len(reports))


# -- the XML signer must be the TLS client (signer_must_be_peer) --------------------------------


def test_a_report_signed_by_another_party_is_refused(tmp_path: Path, pki: Pki, reports: list[SignedReport],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # B is a real peer of the same CA: allowed to connect and a trusted signer (its certificate chains
    # to the signer CA); A is allowed too. A posts a report that B signed.
    peer_b = issue(pki.ca, tmp_path / "b", "rid-peer-b", client=True)
    by_b = signed_reports(SETTINGS, peer_b)[0]
    metric = ("darknet_receiver_refused_reports_total", {"reason": "signer-mismatch"})
    before = REGISTRY.get_sample_value(*metric) or 0
    with receiver_running(tmp_path / "store", pki, [pki.client.subject, peer_b.subject]) as srv:
        caplog.clear()
        status, headers, answer = request(srv, pki, by_b.body)  # TLS client A
        assert status == 403 and headers["content-type"] == "text/plain; charset=utf-8"
        line = answer.decode()
        assert line.count("\n") == 1 and line.startswith("signer is not the TLS client: ")
        assert pki.client.subject in line and peer_b.subject in line
        assert REGISTRY.get_sample_value(*metric) == before + 1
        assert srv.stats["refused_signer-mismatch"] == 1 and srv.stats["403"] == 1
        logged = [r for r in caplog.records if "signer is not the TLS client" in r.getMessage()]
        assert len(logged) == 1 and logged[0].levelname == "WARNING"
        # stored nowhere: no index row, no file
        assert srv.config.store.count() == 0
        assert [p for p in srv.config.store.root.rglob("*.xml")] == []
        # the same report from B itself is accepted, and A's own reports too
        status, _, _ = request(srv, pki, by_b.body, ident=peer_b)
        assert status == 200
        accepted(srv, pki, reports[0])
        assert [r.sender_subject for r in srv.config.store.reports()] == [peer_b.subject, pki.client.subject]


def test_pinned_signers_are_bound_to_the_peer_too(tmp_path: Path, pki: Pki,
                                                  reports: list[SignedReport]) -> None:
    other = make_pki(tmp_path / "other")  # another CA: B is only a pinned signer, never a TLS client here
    by_b = signed_reports(SETTINGS, other.client)[0]
    with receiver_running(tmp_path / "store", pki, [pki.client.subject],
                          trusted=[pki.client.cert, other.client.cert]) as srv:
        status, _, answer = request(srv, pki, by_b.body)
        assert status == 403 and b"signer is not the TLS client" in answer
        accepted(srv, pki, reports[0])
        assert srv.config.store.count() == 1


def test_the_binding_can_be_switched_off(tmp_path: Path, pki: Pki) -> None:
    peer_b = issue(pki.ca, tmp_path / "b", "rid-peer-b", client=True)
    by_b = signed_reports(SETTINGS, peer_b)[0]
    with receiver_running(tmp_path / "store", pki, [pki.client.subject], signer_must_be_peer=False) as srv:
        status, _, _ = request(srv, pki, by_b.body)
        assert status == 200 and srv.config.store.count() == 1


def test_signer_binding_setting_defaults_on_and_follows_toml_and_flags(tmp_path: Path, pki: Pki) -> None:
    from darknet_iodef.cli import build_parser
    from reporter.receiver_cmd import _settings, build_server

    cfg = tmp_path / "rid.toml"
    from_file = ["receiver", "--config", str(cfg)]
    cfg.write_text('[receiver]\nallow = ["CN=a"]\n')
    assert _settings(build_parser().parse_args(from_file)).signer_must_be_peer is True
    cfg.write_text('[receiver]\nallow = ["CN=a"]\nsigner_must_be_peer = false\n')
    assert _settings(build_parser().parse_args(from_file)).signer_must_be_peer is False
    args = ["receiver", "--config", str(cfg), "--signer-must-be-peer"]
    assert _settings(build_parser().parse_args(args)).signer_must_be_peer is True
    args = ["receiver", "--no-signer-must-be-peer", "--allow", "CN=a", "--listen", "127.0.0.1:0",
            "--cert", str(pki.server.cert_path), "--key", str(pki.server.key_path),
            "--client-ca", str(pki.ca.cert_path), "--store", str(tmp_path / "s")]
    server = build_server(_settings(build_parser().parse_args(args)))
    try:
        assert server.config.signer_must_be_peer is False
    finally:
        server.server_close()
        server.config.store.close()


def test_an_index_from_before_report_revisions_gets_the_column(tmp_path: Path, pki: Pki,
                                                              reports: list[SignedReport]) -> None:
    import sqlite3

    store = tmp_path / "store"
    store.mkdir()
    with sqlite3.connect(store / "index.sqlite") as db:
        # the layout of the index before report revisions, as that code created it
        columns = ("id INTEGER PRIMARY KEY", "incident_id TEXT NOT NULL", "incident_name TEXT NOT NULL",
                   "sender_subject TEXT NOT NULL", "sender_fingerprint TEXT NOT NULL",
                   "received REAL NOT NULL", "msg_type TEXT NOT NULL", "purpose TEXT NOT NULL",
                   "kind TEXT NOT NULL",
                   "body_bytes INTEGER NOT NULL", "iodef_bytes INTEGER NOT NULL", "sha256 TEXT NOT NULL",
                   "iodef_sha256 TEXT NOT NULL", "rid_path TEXT NOT NULL", "iodef_path TEXT NOT NULL",
                   "UNIQUE (sender_subject, incident_name, incident_id, iodef_sha256)")
        db.execute(f"CREATE TABLE received ({', '.join(columns)})")
        db.execute("INSERT INTO received VALUES (1, 'old', 'n', 's', 'f', 1, 'Report', 'reporting', '', "
                   "1, 1, 'a', 'b', 'rid/a.xml', 'iodef/b.xml')")
    root = _iodef()
    incident = root.find(f"{{{IODEF_NS}}}Incident")
    etree.SubElement(incident, f"{{{IODEF_NS}}}AdditionalData", dtype="integer",
                     meaning="report-revision").text = "42"
    with receiver_running(store, pki, [pki.client.subject]) as srv:
        accepted(srv, pki, SignedReport("x", _signed(root, pki)))
        accepted(srv, pki, reports[0])  # documents of other senders may carry no revision: 0
        assert [(r.incident_id, r.revision) for r in srv.config.store.reports()] == [
            ("old", 0), (root.findtext(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}IncidentID"), 42),
            (reports[0].incident_id, 0)]
