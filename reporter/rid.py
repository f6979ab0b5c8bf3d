"""RID Report messages (RFC 6545) carrying IODEF 2.0, signed with an enveloped XML signature.

Theory of operation (DOMAIN.md section 7, schemas/README.md caveat 3):

* A one-way incident report is a RID ``Report``: ``RIDPolicy MsgType="Report"``
  with the IODEF document in ``ReportSchema/XMLDocument``. RID 2.0 is defined
  on IODEF **1.0** types, so the IODEF 2.0 payload is announced with
  ``Version="ext-value" ext-Version="2.00" XMLSchemaID="ext-value"
  ext-XMLSchemaID="urn:ietf:params:xml:ns:iodef-2.0"``, the policy ``Node`` is
  an IODEF 1.0 node, and the RID-level ``restriction`` takes IODEF 1.0 values:
  the TLP of the contact maps white -> public, green/amber -> need-to-know,
  red -> private (:data:`RID_RESTRICTION`).
* RFC 6545 section 9.1: "the full IODEF-RID document MUST be signed using an
  enveloped signature by the sending peer ... placed in an instance of the
  Signature element" -- here ``ReportSchema/Signature`` holds one
  ``ds:Signature`` whose single reference is ``URI=""`` (the whole message,
  enveloped-signature transform, exclusive c14n), RSA-SHA256 or ECDSA-SHA256
  with the signer's X.509 certificate in ``KeyInfo``. signxml does the
  canonicalisation and cryptography; we do not hand-roll XMLDSig.
* :func:`open_report` treats the body as hostile: hardened parse
  (:mod:`reporter.xmlsafe`), shape checks, exactly one signature at the one
  expected place covering the whole document (no signature wrapping), a
  verified signature from a trusted certificate (pinned certificates, or a CA
  bundle), and then only the *signed* bytes are used (XML Signature Best
  Practices: authenticate before processing). Schema validation runs, after
  the signature, when the operator provides the schemas
  (:mod:`reporter.schemas`). Every refusal is a
  :class:`~darknet_iodef.errors.DocumentError` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, SignXMLException

from darknet_iodef.errors import ConfigError, DocumentError
from reporter.iodef import IODEF_NS
from reporter.schemas import Schemas
from reporter.xmlsafe import DEFAULT_MAX_BYTES, parse_untrusted

__all__ = [
    "DS_NS",
    "IODEF1_NS",
    "RID_NS",
    "RID_RESTRICTION",
    "SigningIdentity",
    "build_report",
    "open_report",
]

RID_NS: Final = "urn:ietf:params:xml:ns:iodef-rid-2.0"
IODEF1_NS: Final = "urn:ietf:params:xml:ns:iodef-1.0"
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
#: TLP colour (IODEF 2.0 restriction) -> the IODEF 1.0 restriction RID allows
RID_RESTRICTION: Final = {
    "white": "public", "green": "need-to-know", "amber": "need-to-know", "red": "private",
}
#: signature methods accepted from peers (no HMAC, no SHA-1, no DSA)
ACCEPTED_METHODS: Final = frozenset({
    SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512,
    SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA384, SignatureMethod.ECDSA_SHA512,
})
_ACCEPTED_DIGESTS: Final = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """The key that signs RID messages and its certificate (chain)."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certs: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, key_path: str | Path, cert_path: str | Path) -> SigningIdentity:
        """Read a PEM private key (unencrypted) and a PEM certificate (chain, leaf first)."""
        try:
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError("--sign-key", f"cannot read {key_path}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError("--sign-key", f"{key_path}: not an unencrypted PEM key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("--sign-key", f"{key_path}: only RSA and ECDSA keys can sign RID messages")
        try:
            certs = tuple(x509.load_pem_x509_certificates(Path(cert_path).read_bytes()))
        except OSError as exc:
            raise ConfigError("--sign-cert", f"cannot read {cert_path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError("--sign-cert", f"{cert_path} holds no PEM certificate ({exc})") from None
        if certs[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ConfigError("--sign-cert", f"{cert_path} does not belong to the key {key_path}")
        return cls(key, certs)

    @property
    def method(self) -> SignatureMethod:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return SignatureMethod.RSA_SHA256
        return SignatureMethod.ECDSA_SHA256


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _rid_tree(iodef_root: etree._Element, incident_id: str, incident_name: str, tlp: str,
              node_name: str, lang: str) -> etree._Element:
    rid = etree.Element(_q(RID_NS, "RID"), nsmap={"iodef-rid": RID_NS, "iodef": IODEF1_NS, "ds": DS_NS})
    rid.set("lang", lang)
    policy = etree.SubElement(rid, _q(RID_NS, "RIDPolicy"), MsgType="Report", MsgDestination="RIDSystem")
    policy.set("restriction", RID_RESTRICTION.get(tlp, "private"))
    etree.SubElement(policy, _q(RID_NS, "PolicyRegion"), region="PeerToPeer")
    node = etree.SubElement(policy, _q(IODEF1_NS, "Node"))
    etree.SubElement(node, _q(IODEF1_NS, "NodeName")).text = node_name
    etree.SubElement(policy, _q(RID_NS, "TrafficType"), type="Attack")
    iid = etree.SubElement(policy, _q(IODEF1_NS, "IncidentID"), name=incident_name)
    iid.text = incident_id
    schema = etree.SubElement(policy, _q(RID_NS, "ReportSchema"))
    schema.set("Version", "ext-value")
    schema.set("ext-Version", "2.00")
    schema.set("XMLSchemaID", "ext-value")
    schema.set("ext-XMLSchemaID", IODEF_NS)
    doc = etree.SubElement(schema, _q(RID_NS, "XMLDocument"), dtype="xml", meaning="xml")
    doc.append(etree.fromstring(etree.tostring(iodef_root)))  # a copy: the caller's tree stays as it is
    return rid


def build_report(
    iodef_root: etree._Element,
    *,
    incident_id: str,
    incident_name: str,
    tlp: str,
    signer: SigningIdentity | None,
    node_name: str | None = None,
    lang: str = "en",
) -> bytes:
    """A RID Report carrying ``iodef_root``, signed when ``signer`` is given; UTF-8 bytes."""
    rid = _rid_tree(iodef_root, incident_id, incident_name, tlp, node_name or incident_name, lang)
    if signer is None:
        return etree.tostring(rid, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    schema = rid.find(f"{_q(RID_NS, 'RIDPolicy')}/{_q(RID_NS, 'ReportSchema')}")
    assert schema is not None
    holder = etree.SubElement(schema, _q(RID_NS, "Signature"), dtype="xml", meaning="xml")
    etree.SubElement(holder, _q(DS_NS, "Signature"), Id="placeholder")
    # indent first, then sign: whitespace added after signing would break the digest
    rid = etree.fromstring(etree.tostring(rid, pretty_print=True))
    signed = XMLSigner(
        signature_algorithm=signer.method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(rid, key=signer.key, cert=list(signer.certs))
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def _require(cond: object, source: str, position: str, reason: str) -> None:
    if not cond:
        raise DocumentError(source, position, reason)


def _shape(root: etree._Element, source: str) -> tuple[etree._Element, etree._Element]:
    """(ReportSchema, IODEF-Document) of a RID Report, or DocumentError."""
    _require(root.tag == _q(RID_NS, "RID"), source, "root", f"not a RID message (root element {root.tag})")
    policy = root.find(_q(RID_NS, "RIDPolicy"))
    _require(policy is not None, source, "RID", "no RIDPolicy")
    assert policy is not None
    msg = policy.get("MsgType")
    _require(msg == "Report", source, "RIDPolicy@MsgType", f"not a Report (MsgType={msg!r})")
    schema = policy.find(_q(RID_NS, "ReportSchema"))
    _require(schema is not None, source, "RIDPolicy", "no ReportSchema: the Report carries no document")
    assert schema is not None
    sid = schema.get("XMLSchemaID")
    if sid == "ext-value":
        sid = schema.get("ext-XMLSchemaID")
    _require(sid == IODEF_NS, source, "ReportSchema@XMLSchemaID", f"carries {sid!r}, not IODEF 2.0")
    holder = schema.find(_q(RID_NS, "XMLDocument"))
    _require(holder is not None, source, "ReportSchema", "no XMLDocument")
    assert holder is not None
    docs = [c for c in holder if isinstance(c.tag, str)]
    _require(len(docs) == 1 and docs[0].tag == _q(IODEF_NS, "IODEF-Document"), source,
             "XMLDocument", "must hold exactly one IODEF 2.0 IODEF-Document")
    return schema, docs[0]


def _check_iodef(doc: etree._Element, source: str) -> None:
    """The minimum RFC 7970 requires, checked without the XSD."""
    version = doc.get("version")
    _require(version == "2.00", source, "IODEF-Document@version", f"{version!r} is not 2.00")
    incidents = doc.findall(_q(IODEF_NS, "Incident"))
    _require(incidents, source, "IODEF-Document", "no Incident")
    for n, inc in enumerate(incidents, start=1):
        where = f"Incident {n}"
        _require(inc.get("purpose"), source, where, "purpose missing")
        iid = inc.find(_q(IODEF_NS, "IncidentID"))
        _require(iid is not None and (iid.text or "").strip() and iid.get("name"), source, where,
                 "IncidentID with a name is missing")
        gen = inc.find(_q(IODEF_NS, "GenerationTime"))
        _require(gen is not None, source, where, "GenerationTime missing")
        _require(inc.find(_q(IODEF_NS, "Contact")) is not None, source, where, "Contact missing")


def _signature(root: etree._Element, schema: etree._Element, source: str) -> None:
    sigs = root.findall(f".//{_q(DS_NS, 'Signature')}")
    _require(sigs, source, "ReportSchema", "unsigned: RFC 6545 requires an enveloped XML signature")
    _require(len(sigs) == 1, source, "ds:Signature", f"{len(sigs)} signatures; exactly one is accepted")
    holder = sigs[0].getparent()
    _require(holder is not None and holder.tag == _q(RID_NS, "Signature") and holder.getparent() is schema,
             source, "ds:Signature", "the signature is not in RIDPolicy/ReportSchema/Signature")
    refs = sigs[0].findall(f"{_q(DS_NS, 'SignedInfo')}/{_q(DS_NS, 'Reference')}")
    _require(len(refs) == 1 and refs[0].get("URI") == "", source, "ds:Reference",
             "the signature must cover the whole message (one Reference with URI=\"\")")


def _verify(root: etree._Element, trusted: Sequence[x509.Certificate] | Path, source: str) -> etree._Element:
    config = SignatureConfiguration(
        require_x509=True, location=".//", expect_references=1,
        signature_methods=ACCEPTED_METHODS, digest_algorithms=_ACCEPTED_DIGESTS,
    )
    attempts: list[str] = []
    candidates: list[dict[str, object]]
    if isinstance(trusted, Path):
        candidates = [{"ca_pem_file": str(trusted)}]
    else:
        candidates = [{"x509_cert": c} for c in trusted]
    _require(candidates, source, "ds:Signature", "no trusted certificate configured")
    for kwargs in candidates:
        try:
            result = XMLVerifier().verify(root, expect_config=config, **kwargs)  # type: ignore[arg-type]
        except InvalidInput as exc:
            raise DocumentError(source, "ds:Signature", f"malformed signature ({exc})") from None
        except InvalidDigest:
            attempts.append("the message was changed after it was signed (digest mismatch)")
            continue
        except InvalidCertificate as exc:
            attempts.append(f"the signer's certificate is not trusted ({exc})")
            continue
        except SignXMLException as exc:
            text = str(exc).rstrip(": ") or type(exc).__name__
            if isinstance(trusted, Path):
                attempts.append(f"the signer's certificate does not chain to a trusted CA ({text})")
            else:
                attempts.append(f"not signed by a trusted certificate ({text})")
            continue
        except (ValueError, TypeError) as exc:
            attempts.append(f"unusable signature ({exc})")
            continue
        signed = result[0].signed_xml if isinstance(result, list) else result.signed_xml
        if signed is None or signed.tag != _q(RID_NS, "RID"):
            raise DocumentError(source, "ds:Reference", "the signed data is not the RID message")
        return signed
    reason = attempts[0] if len(set(attempts)) == 1 else "; ".join(sorted(set(attempts)))
    raise DocumentError(source, "ds:Signature", f"signature refused: {reason}")


def open_report(
    body: bytes,
    trusted: Sequence[x509.Certificate] | Path,
    *,
    schemas: Schemas | None = None,
    source: str = "peer",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[etree._Element, etree._Element]:
    """Verify a signed RID Report and return ``(rid_root, iodef_root)`` of the signed content.

    ``trusted`` is either the signer certificates accepted as they are (pinned),
    or the path of a PEM CA bundle the signer's certificate must chain to.
    """
    root = parse_untrusted(body, source, max_bytes=max_bytes)
    schema, _ = _shape(root, source)
    _signature(root, schema, source)
    signed = _verify(root, trusted, source)  # authenticate before any further processing
    if schemas is not None:
        errors = schemas.errors(schemas.rid, root)
        _require(not errors, source, errors[0].split(":")[0] if errors else "",
                 "invalid document: " + (errors[0].split(": ", 1)[-1] if errors else ""))
    _, iodef = _shape(signed, source)
    _check_iodef(iodef, source)
    return signed, iodef
