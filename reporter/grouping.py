"""Who gets which events: recipients, reporting periods, and what is held back.

Theory of operation (DOMAIN.md section 6):

* One IODEF document per recipient, per reporting period, per kind of event
  (scan or backscatter), with one ``EventData`` per source address. Receivers
  asked for machine-readable reports aggregated per source.
* The period is a fixed grid of event time (``time.observation`` of the
  event's revision, floored to ``period_s``), never the wall clock: the same
  events give the same documents. Within a period only the newest revision of
  each ``extra.event_id`` is used.
* The ``IncidentID`` is a hash of (recipient, period, kind), so a resent or
  regenerated report carries the same id and a receiver can recognise it.
* Never accuse the innocent: sources flagged ``extra.spoofed``, sources inside
  our own dark prefixes (section 5), members of a decoy group
  (``extra.decoy_group``: Nmap ``-D`` sends identical probes from forged
  sources, and only the target's replies would show which one is real) and
  known research scanners (``extra.known_scanner``, e.g. Censys, Shadowserver)
  are not reported to their apparent networks; spoofing summaries have no accused address at all.
  All of them are listed for the operator instead (:class:`Withheld`).
* Backscatter goes to the *victim's* network as a DoS report (section 3).
* A contact with ``send = false`` still gets its documents written (delivery
  sends nothing to it); its events are listed as ``send-off``.
* A source without a contact is never dropped: it gets a document under
  ``unassigned/<network>`` (grouped per ``group_v4_bits`` / ``group_v6_bits``)
  and is listed for the operator.

Pure: events and a contact table in, groups and withheld events out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from darknet_iodef.addresses import ADDR_DTYPE, parse_addr16
from darknet_iodef.errors import RecordError
from darknet_iodef.events import event_kind, iso_time, parse_iso_time
from reporter.contacts import Contact, ContactTable
from reporter.settings import ReporterSettings

__all__ = [
    "PROTOCOL_NUMBERS",
    "REPORTED_KINDS",
    "Recipient",
    "ReportGroup",
    "ReportableEvent",
    "SourceGroup",
    "Withheld",
    "group_events",
    "incident_id",
    "parse_reportable",
    "recipients_of",
]

#: kinds that are reported to a network; spoofing summaries go to the operator only
REPORTED_KINDS: Final = ("scan", "backscatter")
#: IANA protocol numbers of the transports events name (``protocol.transport``)
PROTOCOL_NUMBERS: Final = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50,
    "icmp6": 58, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132,
}


#: characters that cannot appear in an XML text node
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ReportableEvent:
    """The fields of one event that reports use, checked and typed."""

    kind: str
    event_id: str
    revision: int
    ip: str | None
    asn: int | None
    start_ns: int
    end_ns: int
    observation_ns: int
    transport: str | None
    protocol: int | None
    source_port: int | None
    destination_port: int | None
    ports: tuple[tuple[int | None, int], ...]  # (protocol number, port), most packets first
    port_count: int | None
    scan_kind: str | None
    tool: str | None
    tool_evidence: str | None
    coverage: float | None
    rate_pps: float | None
    confidence: float | None
    packets: int | None
    bytes: int | None
    distinct_destinations: int | None
    destinations_capped: bool
    known_scanner: str | None
    spoofed: bool
    attacker_slash16s: int | None
    icmp_type: int | None
    peak_rate_pps: float | None
    responses: tuple[tuple[str, int], ...]
    decoy_group: tuple[str, ...]  # the other sources of an Nmap -D group (one of them is the scanner)
    identifier: str
    raw: Mapping[str, Any]


def _int(ev: Mapping[str, Any], name: str, lo: int = 0, hi: int | None = None) -> int | None:
    v = ev.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"field {name}: {v!r} is not an integer")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"field {name}: {v} is out of range")
    return v


def _float(ev: Mapping[str, Any], name: str, lo: float = 0.0, hi: float | None = None) -> float | None:
    v = ev.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"field {name}: {v!r} is not a number")
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"field {name}: {v} is out of range")
    return float(v)


def _text(ev: Mapping[str, Any], name: str, limit: int = 200) -> str | None:
    v = ev.get(name)
    if v is None or v == "":
        return None
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError(f"field {name}: {v!r} is not text")
    s = str(v)
    if len(s) > limit or any(ord(c) < 32 for c in s) or _NOT_XML.search(s):
        raise ValueError(f"field {name}: text too long or with control characters")
    return s


def _xml_text(text: str) -> str:
    """Free text from an event, made safe for an XML text node (control characters replaced)."""
    return _NOT_XML.sub("?", text)


def _evidence(v: Any, tool: str | None) -> str | None:
    """Evidence text; from the aggregator's ``{fingerprint: "m/n sampled probes: rule"}`` the tool's own."""
    if v is None or v == "" or v == [] or v == {}:
        return None
    if isinstance(v, str):
        text = v
    elif isinstance(v, list):
        text = "; ".join(str(x) for x in v)
    elif isinstance(v, dict):
        own = tool is not None and tool in v
        text = str(v[tool]) if own else "; ".join(f"{k}: {v[k]}" for k in sorted(v, key=str))
    else:
        text = str(v)
    return _xml_text(text[:500])


def _address(value: Any, field: str) -> str:
    """Canonical text of an IP address (IPv6 compressed), or ValueError naming the field."""
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else "-"))
    except ValueError:
        raise ValueError(f"field {field}: {value!r:.60} is not an IP address") from None


def _first(ev: Mapping[str, Any], *names: str) -> str:
    """The first of several field names the event carries (the aggregator's name comes first)."""
    return next((n for n in names if ev.get(n) is not None), names[0])


def _proto_number(text: str, field: str) -> int:
    t = text.lower()
    n = int(t) if t.isdigit() else PROTOCOL_NUMBERS.get(t, -1)
    if not 0 <= n <= 255:
        raise ValueError(f"field {field}: {text!r} is not a known protocol")
    return n


def _ports(ev: Mapping[str, Any], protocol: int | None) -> list[tuple[int | None, int]]:
    """``extra.ports``: plain ports, or the aggregator's ``{"port", "protocol", ...}`` rows."""
    value = ev.get("extra.ports") or []
    if not isinstance(value, list):
        raise ValueError(f"field extra.ports: {value!r} is not a list")
    out: list[tuple[int | None, int]] = []
    for p in value:
        proto = protocol
        if isinstance(p, dict):
            if isinstance(p.get("protocol"), str | int) and not isinstance(p.get("protocol"), bool):
                proto = _proto_number(str(p["protocol"]), "extra.ports")
            p = p.get("port")
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
            raise ValueError(f"field extra.ports: {p!r} is not a port")
        if (proto, p) not in out:
            out.append((proto, p))
    return out


def parse_reportable(ev: Mapping[str, Any], source: str = "events", position: str = "") -> ReportableEvent:
    """Check the fields reports need; a bad one raises RecordError naming it."""
    try:
        kind = event_kind(ev)
        ip = _text(ev, "source.ip", 64)
        if ip is not None:
            ip = _address(ip, "source.ip")
        if kind in REPORTED_KINDS and ip is None:
            raise ValueError("field source.ip missing")
        transport = _text(ev, "protocol.transport", 16)
        protocol: int | None = None
        if transport is not None:
            transport = transport.lower()
            protocol = _proto_number(transport, "protocol.transport")
        ports = _ports(ev, protocol)
        slash_name = _first(ev, "extra.attacker_networks_16", "extra.attacker_slash16s")
        slash16 = ev.get(slash_name)
        attackers = len(slash16) if isinstance(slash16, list) else _int(ev, slash_name)
        responses_v = ev.get("extra.responses") or {}
        if not isinstance(responses_v, dict) or not all(
            isinstance(k, str) and _NAME.match(k) and type(v) is int and v >= 0
            for k, v in responses_v.items()
        ):
            raise ValueError(f"field extra.responses: {responses_v!r} is not a map of counts")
        responses = tuple(sorted(responses_v.items(), key=lambda kv: (-kv[1], kv[0])))
        icmp_type = _int(ev, "extra.icmp_type", 0, 255)
        if icmp_type is None and protocol in (1, 58) and responses_v.get("icmp-echo-reply"):
            icmp_type = 0 if protocol == 1 else 129  # echo reply: the victim answered pings
        tool = _text(ev, "extra.tool", 64)
        decoys_v = ev.get("extra.decoy_group") or []
        if not isinstance(decoys_v, list) or len(decoys_v) > 10_000:
            raise ValueError(f"field extra.decoy_group: {decoys_v!r:.80} is not a list of addresses")
        decoys = tuple(_address(d, "extra.decoy_group") for d in decoys_v)
        known = ev.get("extra.known_scanner")
        known_text = None
        if known not in (None, False, ""):
            known_text = "yes" if known is True else _text(ev, "extra.known_scanner")
        spoofed = ev.get("extra.spoofed", False)
        if not isinstance(spoofed, bool):
            raise ValueError(f"field extra.spoofed: {spoofed!r} is not true or false")
        return ReportableEvent(
            kind=kind,
            event_id=_text(ev, "extra.event_id", 128) or "",
            revision=_int(ev, "extra.revision") or 0,
            ip=ip,
            asn=_int(ev, "source.asn", 0, 2**32 - 1),
            start_ns=parse_iso_time(str(ev["time.source"])),
            end_ns=parse_iso_time(str(ev["extra.time_end"])),
            observation_ns=parse_iso_time(str(ev["time.observation"])),
            transport=transport,
            protocol=protocol,
            source_port=_int(ev, "source.port", 0, 65535),
            destination_port=_int(ev, "destination.port", 0, 65535),
            ports=tuple(ports),
            port_count=_int(ev, _first(ev, "extra.ports_distinct", "extra.port_count")),
            scan_kind=_text(ev, "extra.kind", 32),
            tool=tool,
            tool_evidence=_evidence(ev.get("extra.tool_evidence"), tool),
            coverage=_float(ev, "extra.coverage", 0.0, 1.0),
            rate_pps=_float(ev, _first(ev, "extra.rate_pps_estimated", "extra.estimated_rate_pps")),
            confidence=_float(ev, "extra.confidence", 0.0, 1.0),
            packets=_int(ev, "extra.packets"),
            bytes=_int(ev, "extra.bytes"),
            distinct_destinations=_int(ev, _first(ev, "extra.destinations_distinct",
                                                  "extra.distinct_destinations")),
            destinations_capped=ev.get("extra.destinations_capped") is True,
            known_scanner=known_text,
            spoofed=spoofed,
            attacker_slash16s=attackers,
            icmp_type=icmp_type,
            peak_rate_pps=_float(ev, "extra.peak_rate_pps_estimated"),
            responses=responses,
            decoy_group=decoys,
            identifier=str(ev["classification.identifier"]),
            raw=ev,
        )
    except (KeyError, TypeError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"bad field ({exc})"
        raise RecordError(source, position, reason) from None


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a document is for: a contact, or an unassigned source network."""

    id: str  # directory name relative to the output: the contact id or unassigned/<net>
    contact: Contact | None
    network: str | None = None  # for unassigned recipients

    @property
    def assigned(self) -> bool:
        return self.contact is not None


@dataclass(frozen=True, slots=True)
class SourceGroup:
    """All events of one source address in one document (one EventData)."""

    ip: str
    events: tuple[ReportableEvent, ...]


@dataclass(frozen=True, slots=True)
class ReportGroup:
    """One IODEF document: recipient x period x kind."""

    recipient: Recipient
    kind: str
    period_start_ns: int
    period_end_ns: int
    incident_id: str
    sources: tuple[SourceGroup, ...]

    @property
    def events(self) -> tuple[ReportableEvent, ...]:
        return tuple(e for s in self.sources for e in s.events)


@dataclass(frozen=True, slots=True)
class Withheld:
    """An event not reported to its network, with the reason, for the operator's list."""

    event: Mapping[str, Any]
    reason: str  # known-scanner, spoofed, spoofing-summary, own-prefix, send-off, no-contact
    recipient: str | None = None


def incident_id(recipient_id: str, period_start_ns: int, kind: str) -> str:
    """Stable IncidentID text: period start, kind and a hash of recipient+period+kind."""
    key = f"{recipient_id}|{period_start_ns}|{kind}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    stamp = iso_time(period_start_ns)[:16].replace("-", "").replace(":", "")
    return f"{stamp}Z-{kind}-{digest}"


def _unassigned_network(ip: str, settings: ReporterSettings) -> str:
    addr = ipaddress.ip_address(ip)
    bits = settings.group_v4_bits if addr.version == 4 else settings.group_v6_bits
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def _dir_name(network: str) -> str:
    return "unassigned/" + network.replace("/", "_").replace(":", "-")


def group_events(
    events: Iterable[ReportableEvent],
    contacts: ContactTable | None,
    settings: ReporterSettings,
) -> tuple[list[ReportGroup], list[Withheld]]:
    """Split events into documents and withheld events (deterministic order)."""
    withheld: list[Withheld] = []
    candidates: list[ReportableEvent] = []
    for e in events:
        if e.kind not in REPORTED_KINDS:
            withheld.append(Withheld(e.raw, "spoofing-summary"))
        elif e.kind == "scan" and e.spoofed:
            withheld.append(Withheld(e.raw, "spoofed"))
        elif e.kind == "scan" and e.known_scanner:
            withheld.append(Withheld(e.raw, "known-scanner"))
        elif e.kind == "scan" and e.decoy_group:
            # identical probes from several sources (nmap -D): one is the scanner, the others are
            # forged, and a darknet never sees the replies that would tell them apart
            withheld.append(Withheld(e.raw, "decoy-group"))
        else:
            candidates.append(e)
    if not candidates:
        return [], _newest_revisions(withheld)
    addrs = np.frombuffer(b"".join(parse_addr16(e.ip or "") for e in candidates), dtype=ADDR_DTYPE)
    own = settings.dark_prefixes().contains_addr16(addrs)
    if contacts is not None:
        idx = contacts.lookup_addr16(addrs)
    else:
        idx = np.full(len(candidates), -1, dtype=np.int32)
    # newest revision per (recipient, period, kind, event id)
    best: dict[tuple[str, int, str, str], ReportableEvent] = {}
    recipients: dict[str, Recipient] = {}
    for e, i, inside in zip(candidates, idx.tolist(), own.tolist(), strict=True):
        if inside and e.kind == "scan":
            withheld.append(Withheld(e.raw, "own-prefix"))
            continue
        if i < 0 and contacts is not None and e.asn is not None and e.asn in contacts.asns:
            i = contacts.asns[e.asn]
        if i >= 0 and contacts is not None:
            contact = contacts.contacts[i]
            if not contact.send:
                # the network asked for no reports: its documents are written (channel "file")
                # for the operator, never sent, and the events are listed as not reported
                withheld.append(Withheld(e.raw, "send-off", contact.id))
            rcpt = recipients.setdefault(contact.id, Recipient(contact.id, contact))
        else:
            net = _unassigned_network(e.ip or "", settings)
            rid = _dir_name(net)
            rcpt = recipients.setdefault(rid, Recipient(rid, None, net))
            if contacts is not None:
                withheld.append(Withheld(e.raw, "no-contact", rid))
        period = e.observation_ns - e.observation_ns % (settings.period_s * 1_000_000_000)
        key = (rcpt.id, period, e.kind, e.event_id)
        old = best.get(key)
        if old is None or (e.revision, e.observation_ns) >= (old.revision, old.observation_ns):
            best[key] = e
    docs: dict[tuple[str, int, str], dict[str, list[ReportableEvent]]]
    docs = defaultdict(lambda: defaultdict(list))
    for (rid, period, kind, _), e in best.items():
        docs[(rid, period, kind)][e.ip or ""].append(e)
    groups = []
    step = settings.period_s * 1_000_000_000
    for (rid, period, kind), by_source in sorted(docs.items()):
        sources = tuple(
            SourceGroup(ip, tuple(sorted(evs, key=lambda x: (x.start_ns, x.event_id))))
            for ip, evs in sorted(by_source.items(), key=lambda kv: _ip_key(kv[0]))
        )
        groups.append(ReportGroup(recipients[rid], kind, period, period + step,
                                  incident_id(rid, period, kind), sources))
    return groups, _newest_revisions(withheld)


def _newest_revisions(withheld: list[Withheld]) -> list[Withheld]:
    """One line per (reason, event id): its newest revision, in order of first appearance."""
    keep: dict[tuple[str, Any], Withheld] = {}
    for w in withheld:
        key = (w.reason, w.event.get("extra.event_id"))
        old = keep.get(key)
        if old is None or _revision(w) >= _revision(old):
            keep[key] = w
    return list(keep.values())


def _revision(w: Withheld) -> tuple[int, str]:
    rev = w.event.get("extra.revision")
    number = rev if isinstance(rev, int) and not isinstance(rev, bool) else 0
    return number, str(w.event.get("time.observation"))


def _ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def recipients_of(groups: Sequence[ReportGroup]) -> list[Recipient]:
    """Distinct recipients in document order."""
    seen: dict[str, Recipient] = {}
    for g in groups:
        seen.setdefault(g.recipient.id, g.recipient)
    return list(seen.values())
