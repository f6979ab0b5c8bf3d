"""A real test PKI made with ``cryptography``: CAs, server and client certificates on disk.

Tests of the RID transport, the receiver and the XML signatures use real X.509
certificates (the project's rule: real parts in tests), made fresh under
``tmp_path`` so nothing secret lives in the repository. Keys are ECDSA P-256
(fast to make; TLS 1.2/1.3 and XMLDSig ecdsa-sha256 both accept them);
``key_type="rsa"`` gives RSA-2048 where a test needs it.

Usage::

    pki = make_pki(tmp_path)             # CA, server (localhost, 127.0.0.1), client
    pki.server.cert_path, pki.server.key_path, pki.ca.cert_path
    rogue = make_ca(tmp_path, "Rogue CA")   # another CA, for refusal tests
    other = issue(pki.ca, tmp_path, "other-client", client=True)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Identity", "Pki", "issue", "make_ca", "make_pki"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
#: fixed validity window around "now" so certificates work for the whole test run
_NOT_BEFORE = dt.timedelta(days=1)
_LIFETIME = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Identity:
    """One certificate with its private key, in memory and as PEM files."""

    name: str
    cert: x509.Certificate
    key: PrivateKey
    cert_path: Path
    key_path: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, lower-case hex without separators."""
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def subject(self) -> str:
        """The subject as an RFC 4514 string (``CN=...,O=...``)."""
        return self.cert.subject.rfc4514_string()


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Identity
    server: Identity
    client: Identity


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _write(directory: Path, name: str, cert: x509.Certificate, key: PrivateKey) -> Identity:
    directory.mkdir(parents=True, exist_ok=True)
    slug = name.lower().replace(" ", "-")
    cert_path = directory / f"{slug}.crt"
    key_path = directory / f"{slug}.key"
    ident = Identity(name, cert, key, cert_path, key_path)
    cert_path.write_bytes(ident.cert_pem)
    key_path.write_bytes(ident.key_pem)
    key_path.chmod(0o600)
    return ident


def _subject(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "darknet-iodef tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def make_ca(directory: Path, name: str = "Test CA", key_type: str = "ec") -> Identity:
    """A self-signed CA certificate (basicConstraints CA, keyCertSign)."""
    key = _new_key(key_type)
    now = dt.datetime.now(dt.UTC)
    subject = _subject(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _NOT_BEFORE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, name, cert, key)


def issue(
    ca: Identity,
    directory: Path,
    name: str,
    *,
    client: bool = False,
    server: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    key_type: str = "ec",
) -> Identity:
    """A leaf certificate signed by ``ca`` (TLS client and/or server, and digital signature)."""
    key = _new_key(key_type)
    now = dt.datetime.now(dt.UTC)
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _NOT_BEFORE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=key_type == "rsa",
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return _write(directory, name, cert, key)


def make_pki(directory: Path, key_type: str = "ec") -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    ca = make_ca(directory, "Test CA", key_type)
    server = issue(ca, directory, "rid-server", server=True, dns=("localhost",), ips=("127.0.0.1",),
                   key_type=key_type)
    client = issue(ca, directory, "rid-client", client=True, key_type=key_type)
    return Pki(ca=ca, server=server, client=client)
