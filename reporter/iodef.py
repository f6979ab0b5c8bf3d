"""IODEF 2.0 (RFC 7970) documents for darknet observations, built with lxml.

Theory of operation: one document per :class:`~reporter.grouping.ReportGroup`
(recipient x period x kind), one ``EventData`` per source address. The shapes
follow the published darknet examples (DOMAIN.md sections 6 and 7):

* **Scan** (after NICT's dext-iodef for DAEDALUS alerts): the recipient's host
  is ``System category="source"``; the telescope is ``System
  category="target"`` with ``NodeRole category="honeypot"`` and its (possibly
  redacted, :mod:`reporter.redact`) prefixes; the probed ports go in the
  target's ``Service`` (``Port`` or ``Portlist``); the scanning tool, when a
  fingerprint matched, is the ``Method`` with the evidence; ``Assessment
  occurrence="potential"`` with ``SystemImpact type="takeover-system"``: the
  host may be infected or misused.
* **Backscatter** (after RFC 8274 B.2, DDoS): the victim is ``System
  category="target"`` with the attacked ``Service``; the attacker is a
  ``System category="source" spoofed="yes"`` with the whole address space
  (spoofed uniformly, Moore et al.); the telescope is ``System
  category="sensor"``; ``SystemImpact type="availability-service"`` (the
  attacked port is known) or ``availability-system``; severity from the
  extrapolated attack rate.

Portability rules, because RFC 7970's schema (section 8) and its text
(section 3) disagree and receivers use either (schemas/README.md caveat 1):
``Counter type="ext-value" ext-type="count"|"rate"`` (never ``counter`` or
``count``); at most one of ``ProtoType``/``ProtoCode`` (their order differs);
no ``Confidence`` element by default -- the RFC schema allows no content,
the MILE WG schema requires a number -- so the confidence (0..1) goes into
``Assessment/AdditionalData meaning="confidence" dtype="real"``
(``confidence_element`` turns the element on for RFC-schema-only peers);
dateTimes are written on one line (libxml2 rejects leading whitespace).
``restriction`` is always explicit (default would be "private"): the TLP of
the recipient's contact row.

Every time in a document is event time (``GenerationTime`` is the newest
observation in the group), so the same events give byte-identical documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from lxml import etree

from darknet_iodef.events import iso_time
from reporter.grouping import PROTOCOL_NUMBERS, ReportableEvent, ReportGroup, SourceGroup
from reporter.redact import TelescopeAddress, telescope_addresses
from reporter.settings import ReporterSettings

__all__ = [
    "BACKSCATTER_SEVERITY_PPS",
    "IODEF_NS",
    "build_iodef",
    "confidence_rating",
    "portlist",
    "serialize",
]

IODEF_NS: Final = "urn:ietf:params:xml:ns:iodef-2.0"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"

# ---- rules as data -------------------------------------------------------------
#: backscatter severity from the extrapolated attack rate at the victim (pps, Moore et al.)
BACKSCATTER_SEVERITY_PPS: Final = ((100_000.0, "high"), (1_000.0, "medium"), (0.0, "low"))
#: scanning tools whose fingerprint means an infected device rather than a scanner someone runs
BOT_TOOLS: Final = frozenset({"mirai"})
#: Confidence/@rating from the detector's confidence 0..1 (lower bounds)
CONFIDENCE_RATINGS: Final = ((0.8, "high"), (0.5, "medium"), (0.0, "low"))
_NAMES_BY_NUMBER: Final = {n: name for name, n in reversed(PROTOCOL_NUMBERS.items())}
_ICMP: Final = (1, 58)


def confidence_rating(value: float) -> str:
    return next(r for lo, r in CONFIDENCE_RATINGS if value >= lo)


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    e = etree.SubElement(parent, f"{{{IODEF_NS}}}{tag}")
    for k, v in attrs.items():
        e.set(k.replace("_", "-"), v)
    if text is not None:
        e.text = text
    return e


def _num(value: float) -> str:
    """xs:float text: integers without a fraction, others with up to 6 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _counter(parent: etree._Element, value: float, kind: str, unit: str, meaning: str,
             duration: str | None = None) -> None:
    attrs = {"type": "ext-value", "ext_type": kind}
    if unit in ("byte", "packet", "host", "event", "flow", "site"):
        attrs["unit"] = unit
    else:
        attrs["unit"], attrs["ext_unit"] = "ext-value", unit
    attrs["meaning"] = meaning
    if duration:
        attrs["duration"] = duration
    _el(parent, "Counter", _num(value), **attrs)


def _address(parent: etree._Element, ip: str) -> None:
    _el(parent, "Address", ip, category="ipv6-addr" if ":" in ip else "ipv4-addr")


def _telescope_node(system: etree._Element, addrs: Sequence[TelescopeAddress], peer: str) -> None:
    """The telescope's addresses of the peer's family (a v4 scanner only reaches v4 dark space)."""
    node = _el(system, "Node")
    want = "ipv6-net" if ":" in peer else "ipv4-net"
    same = [a for a in addrs if a.category in (want, "ext-value")]
    for a in same or addrs:
        if a.ext_category:
            _el(node, "Address", a.value, category=a.category, ext_category=a.ext_category)
        else:
            _el(node, "Address", a.value, category=a.category)


def _service(parent: etree._Element, protocol: int | None, ports: Sequence[int],
             icmp_type: int | None = None) -> None:
    if protocol is None and not ports:
        return  # nothing to say: no empty Service
    attrs = {} if protocol is None else {"ip_protocol": str(protocol)}
    svc = _el(parent, "Service", **attrs)
    uniq = sorted(set(ports))
    if len(uniq) == 1:
        _el(svc, "Port", str(uniq[0]))
    elif uniq:
        _el(svc, "Portlist", portlist(uniq))
    if protocol in _ICMP and icmp_type is not None:
        _el(svc, "ProtoType", str(icmp_type))  # only ProtoType: the two schemas order them differently


def portlist(ports: Sequence[int]) -> str:
    """RFC 7970 PortlistType: sorted; runs of three or more consecutive ports as ranges (``1-10,22,23``)."""
    out: list[str] = []
    uniq = sorted(set(ports))
    i = 0
    while i < len(uniq):
        j = i
        while j + 1 < len(uniq) and uniq[j + 1] == uniq[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{uniq[i]}-{uniq[j]}")
        else:
            out.extend(str(p) for p in uniq[i:j + 1])
        i = j + 1
    return ",".join(out)


def _proto_name(e: ReportableEvent) -> str:
    if e.transport and not e.transport.isdigit():
        return e.transport.upper()
    return _NAMES_BY_NUMBER.get(e.protocol or -1, f"protocol {e.protocol}").upper()


def _ports_by_protocol(e: ReportableEvent, main_port: int | None) -> dict[int | None, list[int]]:
    """Ports per protocol, the event's main port first (insertion order = importance)."""
    out: dict[int | None, list[int]] = {}
    if main_port is not None:
        out[e.protocol] = [main_port]
    for proto, port in e.ports:
        lst = out.setdefault(proto, [])
        if port not in lst:
            lst.append(port)
    return out


def _proto_label(proto: int | None) -> str:
    return _NAMES_BY_NUMBER.get(proto, f"protocol {proto}").upper() if proto is not None else "IP"


def _utc(ns: int) -> str:
    return iso_time(ns)


def _attack_rate(e: ReportableEvent) -> float:
    return max(e.rate_pps or 0.0, e.peak_rate_pps or 0.0)


def _severity_backscatter(rate: float | None) -> str:
    r = rate or 0.0
    return next(s for lo, s in BACKSCATTER_SEVERITY_PPS if r >= lo)


def _scan_severity(events: Iterable[ReportableEvent]) -> str:
    return "medium" if any((e.tool or "").lower() in BOT_TOOLS for e in events) else "low"


def _assessment(parent: etree._Element, kind: str, events: Sequence[ReportableEvent],
                settings: ReporterSettings, sources: int | None = None) -> None:
    a = _el(parent, "Assessment", occurrence="potential" if kind == "scan" else "actual")
    if kind == "scan":
        _el(a, "IncidentCategory", "information-gathering/scanner")
        si = _el(a, "SystemImpact", severity=_scan_severity(events), type="takeover-system")
        _el(si, "Description", "The host sent unsolicited probes to unused address space; it may be "
                               "compromised or misused for scanning.")
    else:
        _el(a, "IncidentCategory", "availability/ddos")
        rate = max((_attack_rate(e) for e in events), default=0.0)
        known_port = any(e.source_port is not None or e.ports for e in events)
        si = _el(a, "SystemImpact", severity=_severity_backscatter(rate),
                 type="availability-service" if known_port else "availability-system")
        _el(si, "Description", "The host answered packets with spoofed source addresses: it was the "
                               "target of a denial-of-service attack (backscatter).")
    if sources is not None:
        _counter(a, sources, "count", "host", "sources in this report")
    conf = [e.confidence for e in events if e.confidence is not None]
    if conf and settings.confidence_element:
        _el(a, "Confidence", rating=confidence_rating(max(conf)))
    if conf:
        _el(a, "AdditionalData", _num(round(max(conf), 4)), dtype="real", meaning="confidence")


def _scan_description(ip: str, events: Sequence[ReportableEvent]) -> str:
    parts = []
    for e in events:
        by_proto = _ports_by_protocol(e, e.destination_port)
        what = f"{e.scan_kind} scan" if e.scan_kind else "scan"
        listed = [f"{_proto_label(p)} port{'s' if len(ports) > 1 else ''} {','.join(map(str, ports))}"
                  for p, ports in by_proto.items()]
        where = f" of {' and '.join(listed)}" if listed else f" of {_proto_name(e)}"
        shown = sum(len(v) for v in by_proto.values())
        more = (e.port_count or shown) - shown
        where += f" (+{more} more)" if more > 0 else ""
        tool = f" with {e.tool}" if e.tool else ""
        dests = ""
        if e.distinct_destinations is not None:
            least = "at least " if e.destinations_capped else ""
            plural = "es" if e.distinct_destinations != 1 else ""
            dests = f", {least}{e.distinct_destinations} dark address{plural}"
        parts.append(f"{what}{where}{tool}{dests}")
    return f"{ip}: " + "; ".join(parts)


def _event_refs(ed: etree._Element, events: Sequence[ReportableEvent]) -> None:
    for e in events:
        _el(ed, "AdditionalData", f"{e.event_id}#{e.revision}", dtype="string", meaning="event-id")


def _source_times(ed: etree._Element, events: Sequence[ReportableEvent]) -> None:
    _el(ed, "DetectTime", _utc(min(e.start_ns for e in events)))
    _el(ed, "StartTime", _utc(min(e.start_ns for e in events)))
    _el(ed, "EndTime", _utc(max(e.end_ns for e in events)))


def _scan_eventdata(inc: etree._Element, src: SourceGroup, settings: ReporterSettings,
                    telescope: Sequence[TelescopeAddress]) -> None:
    evs = src.events
    ed = _el(inc, "EventData")
    _el(ed, "Description", _scan_description(src.ip, evs))
    _source_times(ed, evs)
    _assessment(ed, "scan", evs, settings)
    for tool in sorted({e.tool for e in evs if e.tool}):
        m = _el(ed, "Method")
        evidence = sorted({e.tool_evidence for e in evs if e.tool == tool and e.tool_evidence})
        _el(m, "Description", f"Scanning tool {tool}, identified from packet fingerprints"
            + (f": {'; '.join(evidence)}" if evidence else ""))
    flow = _el(ed, "Flow")
    s = _el(flow, "System", category="source", spoofed="no")
    _address(_el(s, "Node"), src.ip)
    sports = sorted({e.source_port for e in evs if e.source_port is not None})
    if sports:
        _service(s, evs[0].protocol if len({e.protocol for e in evs}) == 1 else None, sports)
    packets = [e.packets for e in evs if e.packets is not None]
    if packets:
        _counter(s, sum(packets), "count", "packet", "packets seen by the telescope")
    octets = [e.bytes for e in evs if e.bytes is not None]
    if octets:
        _counter(s, sum(octets), "count", "byte", "bytes seen by the telescope")
    # extrapolating by 2**32/n only means something when the scanner spreads over addresses
    rates = [e.rate_pps for e in evs if e.rate_pps is not None and e.scan_kind != "vertical"]
    if rates:
        _counter(s, max(rates), "rate", "packet", "estimated Internet-wide probe rate", "second")
    t = _el(flow, "System", category="target")
    _telescope_node(t, telescope, src.ip)
    role = _el(t, "NodeRole", category="honeypot")
    _el(role, "Description", "network telescope (darknet): unused addresses that no host answers from")
    for e in evs:
        by_proto = _ports_by_protocol(e, e.destination_port) or {e.protocol: []}
        for proto, ports in by_proto.items():
            _service(t, proto, ports, e.icmp_type if proto == e.protocol else None)
    dests = [e.distinct_destinations for e in evs if e.distinct_destinations is not None]
    if dests:
        _counter(t, max(dests), "count", "host", "distinct dark addresses probed")
    _el(ed, "Expectation", action="investigate")
    _event_refs(ed, evs)


def _backscatter_eventdata(inc: etree._Element, src: SourceGroup, settings: ReporterSettings,
                           telescope: Sequence[TelescopeAddress]) -> None:
    evs = src.events
    ed = _el(inc, "EventData")
    vectors = "; ".join(_vector_text(e) for e in evs)
    _el(ed, "Description", f"{src.ip}: denial-of-service attack seen through backscatter ({vectors})")
    _source_times(ed, evs)
    _assessment(ed, "backscatter", evs, settings)
    flow = _el(ed, "Flow")
    victim = _el(flow, "System", category="target", spoofed="no")
    _address(_el(victim, "Node"), src.ip)
    for e in evs:
        ports = _ports_by_protocol(e, e.source_port).get(e.protocol, [])
        _service(victim, e.protocol, ports, e.icmp_type)
    packets = [e.packets for e in evs if e.packets is not None]
    if packets:
        _counter(victim, sum(packets), "count", "packet", "backscatter packets seen by the telescope")
    rates = [e.rate_pps for e in evs if e.rate_pps is not None]
    if rates:
        _counter(victim, max(rates), "rate", "packet", "estimated mean attack rate at the victim", "second")
    peaks = [e.peak_rate_pps for e in evs if e.peak_rate_pps is not None]
    if peaks:
        _counter(victim, max(peaks), "rate", "packet", "estimated peak attack rate at the victim", "second")
    attacker = _el(flow, "System", category="source", spoofed="yes")
    _el(_el(attacker, "Node"), "Address", "::/0" if ":" in src.ip else "0.0.0.0/0",
        category="ipv6-net" if ":" in src.ip else "ipv4-net")
    slash16 = [e.attacker_slash16s for e in evs if e.attacker_slash16s is not None]
    if slash16:
        _counter(attacker, max(slash16), "count", "ipv4-slash16", "distinct /16s of spoofed sources seen")
    _el(attacker, "Description", "spoofed source addresses, spread over the address space")
    sensor = _el(flow, "System", category="sensor")
    _telescope_node(sensor, telescope, src.ip)
    role = _el(sensor, "NodeRole", category="honeypot")
    _el(role, "Description", "network telescope (darknet) that received the victim's replies")
    _el(ed, "Expectation", action="investigate")
    _event_refs(ed, evs)


def _vector_text(e: ReportableEvent) -> str:
    ports = _ports_by_protocol(e, e.source_port).get(e.protocol, [])
    text = _proto_name(e)
    if ports:
        text += f" port{'s' if len(ports) > 1 else ''} {','.join(map(str, ports))}"
    rate = _attack_rate(e)
    if rate:
        text += f", about {_num(round(rate))} packets/s at the victim"
    if e.responses:
        text += ", replies: " + ", ".join(f"{n} {name}" for name, n in e.responses)
    return text


_TITLES: Final = {
    "scan": "Hosts in your network scanned unused address space observed by a network telescope",
    "backscatter": "Hosts in your network were targets of denial-of-service attacks (seen as backscatter)",
}


def build_iodef(group: ReportGroup, settings: ReporterSettings) -> etree._Element:
    """The IODEF-Document for one group (an lxml element; see :func:`serialize`)."""
    root = etree.Element(f"{{{IODEF_NS}}}IODEF-Document", nsmap={None: IODEF_NS})
    root.set("version", "2.00")
    root.set(_XML_LANG, settings.lang)
    tlp = group.recipient.contact.tlp if group.recipient.contact else settings.default_tlp
    inc = _el(root, "Incident", purpose="reporting", restriction=tlp)
    _el(inc, "IncidentID", group.incident_id, name=settings.incident_name)
    events = group.events
    newest = max(e.observation_ns for e in events)
    _el(inc, "DetectTime", _utc(min(e.start_ns for e in events)))
    _el(inc, "StartTime", _utc(min(e.start_ns for e in events)))
    _el(inc, "EndTime", _utc(max(e.end_ns for e in events)))
    _el(inc, "ReportTime", _utc(newest))
    _el(inc, "GenerationTime", _utc(newest))
    period = f"{_utc(group.period_start_ns)} to {_utc(group.period_end_ns)}"
    _el(inc, "Description", f"{_TITLES[group.kind]}: {len(group.sources)} "
                            f"source{'s' if len(group.sources) != 1 else ''}, period {period}.")
    disc = _el(inc, "Discovery", source="nidps")
    _el(disc, "Description", "Passive network telescope (darknet): unsolicited traffic to unused addresses")
    _assessment(inc, group.kind, events, settings, sources=len(group.sources))
    creator = _el(inc, "Contact", role="creator", type="organization")
    _el(creator, "ContactName", settings.operator_name)
    _el(_el(creator, "Email"), "EmailTo", settings.operator_email)
    contact = group.recipient.contact
    if contact is not None and contact.abuse_email:
        who = _el(inc, "Contact", role="abuse", type="organization")
        _el(who, "ContactName", contact.organisation)
        _el(_el(who, "Email"), "EmailTo", contact.abuse_email)
    telescope = telescope_addresses(settings)
    for src in group.sources:
        if group.kind == "scan":
            _scan_eventdata(inc, src, settings, telescope)
        else:
            _backscatter_eventdata(inc, src, settings, telescope)
    return root


def serialize(root: etree._Element) -> bytes:
    """UTF-8 bytes with an XML declaration, indented (text nodes stay on one line)."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
