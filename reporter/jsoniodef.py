"""The JSON binding of IODEF 2.0 (RFC 8727), converted from the XML document.

Theory of operation: the JSON document is derived from the lxml tree that
:mod:`reporter.iodef` built, so both formats always say the same thing. The
conversion follows RFC 8727 section 3.2:

* attributes and child elements both become members; ``xml:lang`` is ``lang``;
* classes that may repeat (maxOccurs > 1 in RFC 7970) are arrays, even with
  one item; the others are single values;
* ``Flow``, ``Record``, ``IndicatorData`` and ``ApplicationHeader`` disappear:
  their children move up into the parent (``EventData.System``,
  ``EventData.RecordData`` ...);
* ``Assessment``'s impact choice becomes ``Impact: [{"SystemImpact": ...}]``;
* text with attributes becomes ``{"value": ..., <attributes>}``; an
  ``IncidentID``'s text is ``id``; ``ML_STRING`` without attributes is a plain
  string; integer and real classes (``Port``, ``Counter``, ``ip-protocol``)
  are JSON numbers.

The table below covers every class :mod:`reporter.iodef` emits plus the
common neighbours; an element that repeats although the table says it cannot
raises ``ValueError`` (a bug, never silent data loss).
"""

from __future__ import annotations

import json
from typing import Any, Final

from lxml import etree

from reporter.iodef import IODEF_NS

__all__ = ["dumps", "to_json"]

_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"

#: classes that are arrays in RFC 8727 (maxOccurs > 1 in every parent that uses them)
LIST_CLASSES: Final = frozenset({
    "Incident", "Description", "Discovery", "Assessment", "Method", "Contact", "EventData",
    "System", "NodeRole", "Service", "Counter", "Address", "DomainData", "Location", "Email",
    "Telephone", "ContactName", "ContactTitle", "RegistryHandle", "AdditionalData", "Expectation",
    "RecordData", "Reference", "URL", "IncidentCategory", "Impact", "MitigatingFactor", "Cause",
    "DetectionPattern", "DetectionConfiguration", "AssetID", "OperatingSystem", "RelatedActivity",
    "Indicator", "ThreatActor", "Campaign", "HistoryItem", "RecordItem", "RecordPattern",
    "DefinedCOA", "ApplicationHeaderField", "AttackPhase", "Observable", "FileData", "HashData",
})
#: (parent, class) pairs where a usually repeating class occurs at most once
SINGLE_IN: Final = frozenset({("EventData", "Assessment"), ("Expectation", "Contact"),
                              ("Node", "PostalAddress"), ("RecordData", "Application")})
#: classes whose text is a number in JSON
NUMBER_TEXT: Final = frozenset({"Port", "ProtoType", "ProtoCode", "ProtoField", "Counter", "FileSize",
                                "Confidence"})
#: attributes whose value is a number in JSON
NUMBER_ATTRS: Final = frozenset({"ip-protocol", "vlan-num"})
#: simple-content classes: text plus attributes -> {"value": text, ...}
SIMPLE_CONTENT: Final = frozenset({"Address", "Counter", "AdditionalData", "RecordItem", "Confidence",
                                   "ApplicationHeaderField", "RecordPattern", "BulkObservableList"})
#: classes with element content: empty in XML is an empty object in JSON, not ""
COMPLEX_CLASSES: Final = frozenset({
    "Incident", "Contact", "Email", "Discovery", "Assessment", "SystemImpact", "EventData", "Method",
    "Reference", "System", "Node", "NodeRole", "Service", "Expectation", "RecordData", "Impact",
    "DetectionPattern", "OperatingSystem", "Application", "ServiceName", "Telephone", "PostalAddress",
})
#: containers removed by RFC 8727: their children move into the parent
FLATTENED: Final = frozenset({"Flow", "Record", "IndicatorData", "ApplicationHeader"})
#: Assessment's impact choice, wrapped as Impact: [{name: ...}]
IMPACTS: Final = frozenset({"SystemImpact", "BusinessImpact", "TimeImpact", "MonetaryImpact",
                            "IntendedImpact"})


_LOCAL: dict[str, str] = {}


def _local(tag: Any) -> str | None:
    if not isinstance(tag, str):
        return None  # comment or processing instruction
    name = _LOCAL.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(_LOCAL) < 4096:  # bounded: tags come from a fixed vocabulary, but input is untrusted
            _LOCAL[tag] = name
    return name


def _number(text: str) -> int | float:
    v = float(text.strip())
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def _attrs(elem: etree._Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not elem.attrib:
        return out
    for k, v in elem.attrib.items():
        name = "lang" if k == _XML_LANG else _local(k)
        if name is None or k.startswith("{http://www.w3.org/2001/XMLSchema-instance}"):
            continue
        out[name] = _number(v) if name in NUMBER_ATTRS else v
    return out


def _leaf(name: str, elem: etree._Element) -> Any:
    text = elem.text or ""
    attrs = _attrs(elem)
    if name == "IncidentID":
        return {"id": text.strip(), **attrs}
    value: Any = _number(text) if name in NUMBER_TEXT and text.strip() else text
    if name in SIMPLE_CONTENT or (attrs and text.strip()):
        return {"value": value, **attrs} if text.strip() or name != "Confidence" else attrs
    if attrs or (name in COMPLEX_CLASSES and not text.strip()):
        return attrs
    return value


def _add(out: dict[str, Any], name: str, value: Any, parent: str) -> None:
    if name in LIST_CLASSES and (parent, name) not in SINGLE_IN:
        out.setdefault(name, []).append(value)
    elif name in out:
        raise ValueError(f"{name} occurs twice where RFC 8727 allows one")
    else:
        out[name] = value


def _named_children(elem: etree._Element) -> list[tuple[etree._Element, str]]:
    out = []
    for c in elem:
        n = _local(c.tag)  # lxml builds the tag string on every access: read it once
        if n is not None:
            out.append((c, n))
    return out


def _convert(elem: etree._Element, name: str) -> Any:
    children = _named_children(elem)
    if not children:
        return _leaf(name, elem)
    out = _attrs(elem)
    for child, cname in children:
        if cname in FLATTENED:
            for grand, gname in _named_children(child):
                _add(out, gname, _convert(grand, gname), name)
        elif cname in IMPACTS and name == "Assessment":
            _add(out, "Impact", {cname: _convert(child, cname)}, name)
        else:
            _add(out, cname, _convert(child, cname), name)
    if name == "Assessment":
        _fix_confidence(out)
    return out


def _fix_confidence(assessment: dict[str, Any]) -> None:
    """An XML ``<Confidence rating=.../>`` has no number; RFC 8727 requires ``value``."""
    conf = assessment.get("Confidence")
    if conf is None or "value" in conf:
        return
    for extra in assessment.get("AdditionalData", []):
        if extra.get("meaning") == "confidence":
            conf["value"] = _number(str(extra["value"]))
            return
    del assessment["Confidence"]


def to_json(root: etree._Element) -> dict[str, Any]:
    """An ``IODEF-Document`` element -> the RFC 8727 JSON object."""
    if root.tag != f"{{{IODEF_NS}}}IODEF-Document":
        raise ValueError(f"not an IODEF 2.0 document: {root.tag}")
    doc = _convert(root, "IODEF-Document")
    if not isinstance(doc, dict):
        raise ValueError("an IODEF-Document needs Incident children")
    return doc


def dumps(doc: dict[str, Any]) -> bytes:
    """Stable JSON text: sorted keys, compact (the C encoder; indenting is 5x slower), UTF-8, newline."""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
