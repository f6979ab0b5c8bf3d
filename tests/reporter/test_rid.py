"""RID Reports: schema-valid, signed, and opened only when the signature and the document are right."""

from __future__ import annotations

import pytest
from lxml import etree

from darknet_iodef.errors import ConfigError, DocumentError
from reporter.grouping import group_events, parse_reportable
from reporter.iodef import IODEF_NS, build_iodef
from reporter.rid import DS_NS, RID_NS, SigningIdentity, build_report, open_report
from reporter.schemas import load_schemas
from reporter.settings import ReporterSettings

from .conftest import EVENTS, Schemas
from .pki import Pki, issue


@pytest.fixture
def iodef_root(settings: ReporterSettings) -> etree._Element:
    evs = [parse_reportable(e) for e in EVENTS if e["extra.event_id"] in ("scan-zmap-1", "scan-strobe-2")]
    groups, _ = group_events(evs, None, settings)
    return build_iodef(groups[0], settings)


def signed(root: etree._Element, pki: Pki, tlp: str = "amber") -> bytes:
    signer = SigningIdentity.load(pki.client.key_path, pki.client.cert_path)
    iid = root.findtext(f"{{{IODEF_NS}}}Incident/{{{IODEF_NS}}}IncidentID")
    return build_report(root, incident_id=iid, incident_name="telescope.example.net", tlp=tlp, signer=signer)


def content(root: etree._Element) -> list[tuple[str, dict[str, str], str]]:
    """Elements, attributes and text, ignoring the indentation the RID envelope adds."""
    return [(e.tag, dict(e.attrib), (e.text or "").strip()) for e in root.iter()]


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_signed_report_is_valid_and_opens(key_type: str, iodef_root: etree._Element, signer_pki: Pki,
                                          rsa_pki: Pki, schemas: Schemas) -> None:
    pki = signer_pki if key_type == "ec" else rsa_pki
    body = signed(iodef_root, pki)
    root = etree.fromstring(body)
    assert schemas.errors(schemas.rid, root) == []
    sig = root.find(f".//{{{DS_NS}}}Signature")
    method = sig.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}SignatureMethod").get("Algorithm")
    assert method.endswith("ecdsa-sha256" if key_type == "ec" else "rsa-sha256")
    assert sig.getparent().tag == f"{{{RID_NS}}}Signature"
    policy = root.find(f"{{{RID_NS}}}RIDPolicy")
    assert (policy.get("MsgType"), policy.get("restriction")) == ("Report", "need-to-know")
    rs = policy.find(f"{{{RID_NS}}}ReportSchema")
    assert dict(rs.attrib) == {"Version": "ext-value", "ext-Version": "2.00", "XMLSchemaID": "ext-value",
                               "ext-XMLSchemaID": "urn:ietf:params:xml:ns:iodef-2.0"}
    # pinned certificate, CA bundle, and full schema validation at the receiver
    for trusted in ([pki.client.cert], pki.ca.cert_path):
        rid_root, iodef = open_report(body, trusted, schemas=load_schemas(schemas.root))
        assert rid_root.tag == f"{{{RID_NS}}}RID"
        assert rid_root.find(f".//{{{DS_NS}}}Signature") is None  # only the signed content comes back
        assert content(iodef) == content(iodef_root)
        assert len(content(iodef)) > 40


def test_signed_report_is_valid_for_xmlschema_too(iodef_root: etree._Element, signer_pki: Pki,
                                                  xmlschema_validators: dict) -> None:
    body = signed(iodef_root, signer_pki)
    assert list(xmlschema_validators["rid"].iter_errors(body.decode())) == []
    etree.SubElement(iodef_root.find(f"{{{IODEF_NS}}}Incident"), f"{{{IODEF_NS}}}Bogus").text = "x"
    assert list(xmlschema_validators["rid"].iter_errors(signed(iodef_root, signer_pki).decode())) != []


def test_rid_schema_reaches_into_the_embedded_document(iodef_root: etree._Element, signer_pki: Pki,
                                                       schemas: Schemas) -> None:
    etree.SubElement(iodef_root.find(f"{{{IODEF_NS}}}Incident"), f"{{{IODEF_NS}}}Bogus").text = "x"
    body = signed(iodef_root, signer_pki)
    assert any("Bogus" in e for e in schemas.errors(schemas.rid, etree.fromstring(body)))
    with pytest.raises(DocumentError, match=r"invalid document: .*Bogus"):
        open_report(body, [signer_pki.client.cert], schemas=load_schemas(schemas.root))


def test_tlp_maps_to_iodef_1_restrictions(iodef_root: etree._Element, signer_pki: Pki) -> None:
    got = {}
    for tlp in ("white", "green", "amber", "red"):
        policy = etree.fromstring(signed(iodef_root, signer_pki, tlp)).find(f"{{{RID_NS}}}RIDPolicy")
        got[tlp] = policy.get("restriction")
    assert got == {"white": "public", "green": "need-to-know", "amber": "need-to-know", "red": "private"}


def test_tampered_content_is_refused(iodef_root: etree._Element, signer_pki: Pki) -> None:
    body = signed(iodef_root, signer_pki).replace(b"192.0.2.10", b"192.0.2.11")
    with pytest.raises(DocumentError, match="changed after it was signed"):
        open_report(body, [signer_pki.client.cert])


def test_tampered_signature_value_is_refused(iodef_root: etree._Element, signer_pki: Pki) -> None:
    root = etree.fromstring(signed(iodef_root, signer_pki))
    value = root.find(f".//{{{DS_NS}}}SignatureValue")
    raw = bytearray(value.text.encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    value.text = raw.decode()
    with pytest.raises(DocumentError, match="signature refused"):
        open_report(etree.tostring(root), [signer_pki.client.cert])


def test_unsigned_is_refused(iodef_root: etree._Element) -> None:
    body = build_report(iodef_root, incident_id="x", incident_name="telescope.example.net", tlp="amber",
                        signer=None)
    with pytest.raises(DocumentError) as exc:
        open_report(body, [])
    assert exc.value.reason == "unsigned: RFC 6545 requires an enveloped XML signature"


def test_wrong_certificate_is_refused(iodef_root: etree._Element, signer_pki: Pki, rogue_ca,
                                      tmp_path) -> None:
    body = signed(iodef_root, signer_pki)
    other = issue(signer_pki.ca, tmp_path, "someone-else", client=True)
    with pytest.raises(DocumentError, match="not signed by a trusted certificate"):
        open_report(body, [other.cert])
    with pytest.raises(DocumentError, match=r"certificate is not trusted|does not chain"):
        open_report(body, rogue_ca.cert_path)
    # a valid signature by a key of the rogue CA is refused as well
    rogue_leaf = issue(rogue_ca, tmp_path, "rogue-signer", client=True)
    signer = SigningIdentity.load(rogue_leaf.key_path, rogue_leaf.cert_path)
    forged = build_report(iodef_root, incident_id="x", incident_name="n.example", tlp="red", signer=signer)
    with pytest.raises(DocumentError, match=r"certificate is not trusted|does not chain"):
        open_report(forged, signer_pki.ca.cert_path)


def test_invalid_document_is_refused_without_schemas(iodef_root: etree._Element, signer_pki: Pki) -> None:
    inc = iodef_root.find(f"{{{IODEF_NS}}}Incident")
    for contact in inc.findall(f"{{{IODEF_NS}}}Contact"):
        inc.remove(contact)
    body = signed(iodef_root, signer_pki)
    with pytest.raises(DocumentError) as exc:
        open_report(body, [signer_pki.client.cert])
    assert (exc.value.position, exc.value.reason) == ("Incident 1", "Contact missing")


def test_not_a_report_is_refused(iodef_root: etree._Element, signer_pki: Pki) -> None:
    body = signed(iodef_root, signer_pki).replace(b'MsgType="Report"', b'MsgType="Query"')
    with pytest.raises(DocumentError) as exc:
        open_report(body, [signer_pki.client.cert])
    assert exc.value.reason == "not a Report (MsgType='Query')"
    with pytest.raises(DocumentError, match="not a RID message"):
        open_report(etree.tostring(iodef_root), [signer_pki.client.cert])


def test_signature_must_cover_the_whole_message(iodef_root: etree._Element, signer_pki: Pki) -> None:
    root = etree.fromstring(signed(iodef_root, signer_pki))
    root.find(f".//{{{DS_NS}}}Reference").set("URI", "#part")
    with pytest.raises(DocumentError, match="cover the whole message"):
        open_report(etree.tostring(root), [signer_pki.client.cert])


def test_moved_or_extra_signature_is_refused(iodef_root: etree._Element, signer_pki: Pki) -> None:
    root = etree.fromstring(signed(iodef_root, signer_pki))
    sig = root.find(f".//{{{DS_NS}}}Signature")
    copy = etree.fromstring(etree.tostring(sig))
    root.find(f".//{{{IODEF_NS}}}EventData").append(copy)
    with pytest.raises(DocumentError, match="2 signatures"):
        open_report(etree.tostring(root), [signer_pki.client.cert])
    sig.getparent().remove(sig)
    with pytest.raises(DocumentError, match="not in RIDPolicy/ReportSchema/Signature"):
        open_report(etree.tostring(root), [signer_pki.client.cert])


def test_signing_identity_checks_key_and_certificate(signer_pki: Pki, tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not belong to the key"):
        SigningIdentity.load(signer_pki.client.key_path, signer_pki.server.cert_path)
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match="cannot read"):
        SigningIdentity.load(missing, signer_pki.client.cert_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM key"):
        SigningIdentity.load(garbage, signer_pki.client.cert_path)
