"""RFC 6546 client: endpoint rules, outcome classification, and real mutual-TLS exchanges on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from darknet_iodef.errors import ConfigError
from reporter.tlsconfig import AllowList, client_context, peer_identity, server_context
from reporter.transport import (
    Endpoint,
    Outcome,
    OutcomeKind,
    RidTransport,
    classify_status,
    parse_endpoint,
    request_headers,
)

from .pki import Pki, issue, make_ca, make_pki

# -- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("https://rid.example.net", Endpoint("rid.example.net", 4590)),
    ("https://rid.example.net/", Endpoint("rid.example.net", 4590)),
    ("https://rid.example.net:8443/", Endpoint("rid.example.net", 8443)),
    ("https://[2001:db8::1]/", Endpoint("2001:db8::1", 4590)),
    ("https://127.0.0.1:4591", Endpoint("127.0.0.1", 4591)),
])
def test_parse_endpoint(url: str, expected: Endpoint) -> None:
    assert parse_endpoint(url) == expected


@pytest.mark.parametrize(("url", "why"), [
    ("http://rid.example.net/", "https://"),
    ("https://rid.example.net/rid", "posted to '/'"),
    ("https://rid.example.net/?x=1", "posted to '/'"),
    ("https://user:pw@rid.example.net/", "credentials"),
    ("https://:4590/", "no host"),
    ("https://rid.example.net:99999/", "not a URL"),
])
def test_parse_endpoint_refuses(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match="rid_url") as exc:
        parse_endpoint(url)
    assert why in exc.value.reason


def test_request_headers() -> None:
    assert request_headers(Endpoint("rid.example.net", 4590), 1234) == {
        "Host": "rid.example.net:4590",
        "Content-Type": "text/xml; charset=utf-8",
        "Content-Length": "1234",
        "Accept": "text/xml",
        "User-Agent": "darknet-iodef",
    }
    assert request_headers(Endpoint("2001:db8::1", 443), 0)["Host"] == "[2001:db8::1]"


@pytest.mark.parametrize(("status", "kind"), [
    (200, OutcomeKind.DELIVERED), (202, OutcomeKind.DELIVERED), (204, OutcomeKind.DELIVERED),
    (400, OutcomeKind.REJECTED), (403, OutcomeKind.REJECTED), (413, OutcomeKind.REJECTED),
    (415, OutcomeKind.REJECTED), (301, OutcomeKind.TRANSIENT), (302, OutcomeKind.TRANSIENT),
    (500, OutcomeKind.TRANSIENT), (503, OutcomeKind.TRANSIENT),
])
def test_classify_status(status: int, kind: OutcomeKind) -> None:
    assert classify_status(status).kind is kind
    assert classify_status(status).status == status


def test_classify_keeps_a_clean_reason() -> None:
    o = classify_status(400, "Bad Request", b"XMLDocument: \x1b[31mno\x00 IODEF\r\n  document\n")
    assert o == Outcome(OutcomeKind.REJECTED, "HTTP 400 Bad Request: XMLDocument: [31mno IODEF document", 400)
    assert len(classify_status(400, "Bad", b"x" * 10_000).reason) == 300
    assert "redirects are not followed" in classify_status(302, "Found").reason
    assert classify_status(200, "OK", b"<Ack/>") == Outcome(OutcomeKind.DELIVERED, "", 200, b"<Ack/>")


def test_allow_list_parsing_and_matching(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    pin = pki.client.fingerprint
    colons = ":".join(pin[i:i + 2] for i in range(0, 64, 2)).upper()
    der = pki.client.cert.public_bytes(Encoding.DER)
    server_der = pki.server.cert.public_bytes(Encoding.DER)
    assert peer_identity(der).fingerprint == pin
    assert peer_identity(der).subject == "CN=rid-client,O=darknet-iodef tests"
    for entry in (pin, colons, f"sha256:{colons}", "CN=rid-client,O=darknet-iodef tests"):
        allow = AllowList.parse([entry])
        assert allow.permits_der(der), entry
        assert not allow.permits_der(server_der), entry
    assert not AllowList.parse(["CN=rid-client"]).permits_der(der)  # the whole subject, not a part
    assert not AllowList.parse([]).permits_der(der)
    assert not AllowList.parse([pin]).permits_der(None)
    assert not AllowList.parse(["CN=x"]).permits_der(b"not a certificate")
    assert not AllowList.parse(["", "  "])
    with pytest.raises(ConfigError, match="neither a SHA-256 fingerprint nor a subject"):
        AllowList.parse(["deadbeef"])


def test_contexts_need_files(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with pytest.raises(ConfigError, match="tls_cert: is required"):
        client_context(None, pki.client.key_path, pki.ca.cert_path)
    with pytest.raises(ConfigError, match=r"client_ca: .* is not a readable file"):
        server_context(pki.server.cert_path, pki.server.key_path, tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="tls_cert: cannot load certificate"):
        client_context(pki.client.cert_path, pki.server.key_path, pki.ca.cert_path)
    ctx = client_context(pki.client.cert_path, pki.client.key_path, pki.ca.cert_path)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    with pytest.raises(ConfigError, match="allow-list is empty"):
        RidTransport(ctx, AllowList.parse([]))


# -- real exchanges -----------------------------------------------------------------------------


class _Peer(ThreadingHTTPServer):
    """A scripted HTTPS peer: answers each POST with the next (status, body, headers)."""

    daemon_threads = True

    def __init__(self, ctx: ssl.SSLContext, script: list[tuple[int, bytes, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), _PeerHandler)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.script = script
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.connections: set[tuple[str, int]] = set()


class _PeerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Peer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.command, self.path, dict(self.headers), body))
        self.server.connections.add(self.client_address)
        status, answer, headers = self.server.script.pop(0) if self.server.script else (200, b"", {})
        headers = dict(headers)
        if headers.pop("X-Close", None):
            # close after answering without saying so, as servers do at their keep-alive timeout
            self.close_connection = True
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@contextmanager
def peer(pki: Pki, script: list[tuple[int, bytes, dict[str, str]]] | None = None,
         cert: Any = None) -> Iterator[_Peer]:
    ident = cert or pki.server
    srv = _Peer(server_context(ident.cert_path, ident.key_path, pki.ca.cert_path), script or [])
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("transport-pki"))


def transport(pki: Pki, allow: list[str] | None = None, **kw: Any) -> RidTransport:
    ctx = client_context(pki.client.cert_path, pki.client.key_path, pki.ca.cert_path)
    return RidTransport(ctx, AllowList.parse(allow or [pki.server.fingerprint]), **kw)


def test_post_to_root_with_text_xml_over_mutual_tls(pki: Pki) -> None:
    with peer(pki, [(200, b"", {}), (400, b"ReportSchema: no XMLDocument", {}), (503, b"", {})]) as p, \
            transport(pki) as t:
        ep = Endpoint("127.0.0.1", p.server_address[1])
        assert t.send(ep, b"<RID/>") == Outcome(OutcomeKind.DELIVERED, "", 200)
        assert t.send(ep, b"<bad/>") == Outcome(
            OutcomeKind.REJECTED, "HTTP 400 Bad Request: ReportSchema: no XMLDocument", 400)
        assert t.send(ep, b"<RID/>").kind is OutcomeKind.TRANSIENT
        method, path, headers, body = p.received[0]
        assert (method, path, body) == ("POST", "/", b"<RID/>")
        assert headers["Content-Type"] == "text/xml; charset=utf-8"
        # RFC 6546: persistent connections; three requests, one connection
        assert len(p.connections) == 1


def test_redirect_is_not_followed(pki: Pki) -> None:
    with peer(pki, [(302, b"", {"Location": "https://127.0.0.1:1/"})]) as p, transport(pki) as t:
        o = t.send(Endpoint("127.0.0.1", p.server_address[1]), b"<RID/>")
        assert (o.kind, o.status) == (OutcomeKind.TRANSIENT, 302)
        assert len(p.received) == 1


def test_hostname_matches_dns_id(pki: Pki) -> None:
    with peer(pki) as p, transport(pki) as t:
        o = t.send(Endpoint("localhost", p.server_address[1]), b"<RID/>")
        assert o.kind is OutcomeKind.DELIVERED
def test_hostname_mismatch_is_refused(pki: Pki, tmp_path: Path) -> None:
    other = issue(pki.ca, tmp_path, "elsewhere", server=True, dns=("rid.example.org",))
    with peer(pki, cert=other) as p, transport(pki, [other.fingerprint]) as t:
        o = t.send(Endpoint("127.0.0.1", p.server_address[1]), b"<RID/>")
        assert o.kind is OutcomeKind.TRANSIENT
        assert "peer certificate refused" in o.reason and "IP address mismatch" in o.reason
        assert p.received == []


def test_peer_from_another_ca_is_refused(pki: Pki, tmp_path: Path) -> None:
    rogue = make_ca(tmp_path, "Rogue CA")
    imposter = issue(rogue, tmp_path, "imposter", server=True, ips=("127.0.0.1",))
    srv_pki = Pki(ca=pki.ca, server=imposter, client=pki.client)
    with peer(srv_pki) as p, transport(pki, [imposter.fingerprint]) as t:
        o = t.send(Endpoint("127.0.0.1", p.server_address[1]), b"<RID/>")
        assert o.kind is OutcomeKind.TRANSIENT
        assert "certificate verify failed" in o.reason or "unable to get local issuer" in o.reason
        assert p.received == []


def test_peer_not_on_allow_list_gets_nothing(pki: Pki, tmp_path: Path) -> None:
    twin = issue(pki.ca, tmp_path, "twin", server=True, ips=("127.0.0.1",))
    with peer(pki, cert=twin) as p, transport(pki, [pki.server.fingerprint]) as t:
        o = t.send(Endpoint("127.0.0.1", p.server_address[1]), b"<RID/>")
        assert o.kind is OutcomeKind.TRANSIENT
        assert o.reason == (f"peer certificate is not on the allow-list (CN=twin,O=darknet-iodef tests "
                            f"sha256={twin.fingerprint})")
        assert p.received == []  # the body never left


def test_connection_refused_and_timeout_are_transient(pki: Pki) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with transport(pki) as t:
        o = t.send(Endpoint("127.0.0.1", port), b"<RID/>")
    assert o.kind is OutcomeKind.TRANSIENT and "ConnectionRefusedError" in o.reason
    # a listener that never answers the TLS handshake
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with transport(pki, timeout_s=0.5) as t:
            o = t.send(Endpoint("127.0.0.1", silent.getsockname()[1]), b"<RID/>")
    assert o.kind is OutcomeKind.TRANSIENT and o.reason.startswith("timeout talking to")


def test_stale_kept_alive_connection_is_retried_once(pki: Pki) -> None:
    with peer(pki, [(200, b"", {"X-Close": "1"}), (200, b"", {})]) as p, transport(pki) as t:
        ep = Endpoint("127.0.0.1", p.server_address[1])
        assert t.send(ep, b"<one/>").delivered
        time.sleep(0.1)  # let the peer's close arrive
        assert t.send(ep, b"<two/>").delivered
        assert [r[3] for r in p.received] == [b"<one/>", b"<two/>"]


def test_a_peer_dripping_its_answer_is_cut_at_the_deadline(pki: Pki) -> None:
    ctx = server_context(pki.server.cert_path, pki.server.key_path, pki.ca.cert_path)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.1):  # one byte every 0.1 s, each well inside the socket timeout
                try:
                    tls.sendall(b"x")
                except OSError:
                    return

    port = listener.getsockname()[1]
    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        with transport(pki, timeout_s=5.0, deadline_s=1.0) as tr:
            o = tr.send(Endpoint("127.0.0.1", port), b"<RID/>")
    finally:
        stop.set()
        t.join(5)
        listener.close()
    why = f"no complete answer from https://127.0.0.1:{port}/ within 1 s"
    assert o == Outcome(OutcomeKind.TRANSIENT, why)


def test_peer_with_a_client_only_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    client_only = issue(pki.ca, tmp_path, "not-a-server", client=True, ips=("127.0.0.1",))
    with peer(pki, cert=client_only) as p, transport(pki, [client_only.fingerprint]) as t:
        o = t.send(Endpoint("127.0.0.1", p.server_address[1]), b"<RID/>")
        why = "TLS: peer certificate refused: unsuitable certificate purpose"
        assert o == Outcome(OutcomeKind.TRANSIENT, why)
        assert p.received == []
