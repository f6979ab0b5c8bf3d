"""The constituency table: which organisation receives reports about which network.

Theory of operation: a telescope operator keeps one row per network it can
attribute (prefix or AS number): the organisation, its abuse mailbox (RFC 2142),
its RID endpoint (RFC 6546) if it runs one, the preferred format, the TLP to set
on its reports and whether to send anything at all (DOMAIN.md section 6: send
only what receivers asked for). Tables come from TOML (hand-kept, a few dozen
organisations) or CSV (exported from a registry or an RIR dump: up to a
million prefixes).

Lookup is longest-prefix match, in bulk. IPv4: at load time the nested
prefixes are flattened into an interval index -- sorted, disjoint ranges of
the address space, each owned by the longest prefix covering it (a stack sweep
over the prefixes in address order) -- so a batch of addresses costs one
``searchsorted``, whatever the number of prefixes or lengths. IPv6 (tables are
small and 128-bit ranges do not fit numpy integers): per prefix length a
sorted array of 16-byte network values; addresses are masked once per length,
longest first, and the first exact hit wins. ``bench/bench_contacts.py``
measures both against the classic scalar dict-per-length lookup.

ASN rows match only events that carry ``source.asn`` (the aggregator does not
look up ASNs; an enrichment step such as IntelMQ's may add it). A prefix match
wins over an ASN match: it is the more specific statement.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from darknet_iodef.addresses import ADDR_DTYPE, V4_MAPPED_PREFIX, addr16_is_v4, addr16_to_v4
from darknet_iodef.errors import ConfigError
from reporter.settings import TLP_VALUES

__all__ = [
    "CONTACT_FORMATS",
    "CSV_COLUMNS",
    "Contact",
    "ContactTable",
    "load_contacts",
    "slug",
]

#: how a recipient prefers its reports: RID over HTTPS, or IODEF files as XML or JSON (mail/directory)
CONTACT_FORMATS: Final = ("rid", "xml", "json")
#: CSV header (``id`` and the columns after ``abuse_email`` are optional)
CSV_COLUMNS: Final = ("network", "id", "organisation", "abuse_email", "rid_url", "format", "tlp", "send")

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_ASN = re.compile(r"^AS(\d{1,10})$", re.IGNORECASE)
_SLUG = re.compile(r"[^a-z0-9._-]+")
_TRUE = {"1", "true", "yes", "on", ""}
_FALSE = {"0", "false", "no", "off"}


def slug(text: str) -> str:
    """A directory-safe recipient id from a name (``"Example ISP"`` -> ``example-isp``)."""
    s = _SLUG.sub("-", text.lower()).strip("-.")
    return s[:64] or "recipient"


@dataclass(frozen=True, slots=True)
class Contact:
    """One recipient of reports."""

    id: str
    organisation: str
    abuse_email: str | None = None
    rid_url: str | None = None
    format: str = "xml"
    tlp: str = "amber"
    send: bool = True


@dataclass(frozen=True, slots=True)
class _Level:
    length: int
    keys: npt.NDArray[Any]  # sorted uint32 (IPv4) or S16 (IPv6)
    index: npt.NDArray[np.int32]  # contact index per key


def _v4_mask(length: int) -> np.uint32:
    return np.uint32(0 if length == 0 else (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF)


def _v6_mask(length: int) -> npt.NDArray[np.uint8]:
    bits = np.zeros(128, dtype=np.uint8)
    bits[:length] = 1
    return np.packbits(bits)


@dataclass(frozen=True, slots=True)
class ContactTable:
    """Contacts with bulk longest-prefix match (IPv4 and IPv6) and ASN lookup."""

    contacts: tuple[Contact, ...]
    v4: tuple[_Level, ...] = ()
    v6: tuple[_Level, ...] = ()
    asns: Mapping[int, int] = field(default_factory=dict)
    #: IPv4 interval index: range i is [v4_bounds[i], v4_bounds[i+1]), owned by contact v4_owner[i] (-1: none)
    v4_bounds: npt.NDArray[np.uint32] = field(default_factory=lambda: np.zeros(1, dtype=np.uint32))
    v4_owner: npt.NDArray[np.int32] = field(default_factory=lambda: np.full(1, -1, dtype=np.int32))

    @property
    def prefix_count(self) -> int:
        return sum(len(level.keys) for level in self.v4 + self.v6)

    @classmethod
    def build(
        cls,
        contacts: Sequence[Contact],
        networks: Iterable[tuple[str, int]],
        asns: Mapping[int, int] | None = None,
        where: str = "contacts",
    ) -> ContactTable:
        """From ``(cidr, contact index)`` pairs; a duplicate or bad prefix is a ConfigError."""
        parsed = ((*_parse_network(text, where), idx) for text, idx in networks)
        return cls._assemble(contacts, parsed, asns, where)

    @classmethod
    def _assemble(
        cls,
        contacts: Sequence[Contact],
        parsed: Iterable[tuple[int, bytes, int, int]],
        asns: Mapping[int, int] | None,
        where: str,
    ) -> ContactTable:
        v4: dict[int, tuple[list[int], list[int]]] = {}
        v6: dict[int, tuple[list[bytes], list[int]]] = {}
        for family, value, length, idx in parsed:
            if family == 4:
                keys4, idxs4 = v4.setdefault(length, ([], []))
                keys4.append(int.from_bytes(value, "big"))
                idxs4.append(idx)
            else:
                keys6, idxs6 = v6.setdefault(length, ([], []))
                keys6.append(value)
                idxs6.append(idx)
        levels4 = tuple(
            _sorted_level(length, np.array(k, dtype=np.uint32), np.array(i, dtype=np.int32), where, 4)
            for length, (k, i) in sorted(v4.items(), reverse=True)
        )
        levels6 = tuple(
            _sorted_level(length, np.array(k, dtype="S16"), np.array(i, dtype=np.int32), where, 6)
            for length, (k, i) in sorted(v6.items(), reverse=True)
        )
        return cls(tuple(contacts), levels4, levels6, dict(asns or {}), *_interval_index(levels4))

    @classmethod
    def from_v4_arrays(
        cls,
        contacts: Sequence[Contact],
        starts: npt.NDArray[np.uint32],
        lengths: npt.NDArray[np.integer[Any]],
        index: npt.NDArray[np.int32],
    ) -> ContactTable:
        """Bulk build for IPv4 (registry dumps, the benchmark): host-order starts and lengths."""
        levels = []
        for length in sorted(set(int(x) for x in np.unique(lengths)), reverse=True):
            sel = lengths == length
            keys = starts[sel].astype(np.uint32) & _v4_mask(length)
            levels.append(_sorted_level(length, keys, index[sel].astype(np.int32), "contacts", 4))
        return cls(tuple(contacts), tuple(levels), (), {}, *_interval_index(tuple(levels)))

    def lookup_addr16(self, addrs: npt.NDArray[np.void]) -> npt.NDArray[np.int32]:
        """Contact index of each ``V16`` address by longest-prefix match (-1: no prefix)."""
        addrs = np.ascontiguousarray(addrs, dtype=ADDR_DTYPE).reshape(-1)
        out = np.full(addrs.shape[0], -1, dtype=np.int32)
        if addrs.size == 0:
            return out
        is4 = addr16_is_v4(addrs)
        if is4.any() and self.v4:
            out[is4] = self.lookup_v4(addr16_to_v4(addrs[is4]))
        if (~is4).any() and self.v6:
            raw = np.ascontiguousarray(addrs[~is4]).view(np.uint8).reshape(-1, 16)
            out[~is4] = self._lookup_v6(raw)
        return out

    def lookup_v4(self, v4: npt.NDArray[np.uint32]) -> npt.NDArray[np.int32]:
        """Contact index of host-order uint32 IPv4 addresses (-1: no prefix)."""
        a = np.asarray(v4, dtype=np.uint32)
        if a.size < 4096:
            return self.v4_owner[np.searchsorted(self.v4_bounds, a, side="right") - 1]
        # sorted queries walk the bounds array in order: far fewer cache misses on big tables
        order = np.argsort(a)
        out = np.empty(a.size, dtype=np.int32)
        out[order] = self.v4_owner[np.searchsorted(self.v4_bounds, a[order], side="right") - 1]
        return out

    def _lookup_v6(self, raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
        out = np.full(raw.shape[0], -1, dtype=np.int32)
        todo = np.arange(raw.shape[0])
        for level in self.v6:
            if todo.size == 0:
                break
            key = np.ascontiguousarray(raw[todo] & _v6_mask(level.length)).view("S16").reshape(-1)
            pos = np.searchsorted(level.keys, key)
            np.minimum(pos, level.keys.size - 1, out=pos)
            hit = level.keys[pos] == key
            out[todo[hit]] = level.index[pos[hit]]
            todo = todo[~hit]
        return out

    def lookup(self, ip: str, asn: int | None = None) -> Contact | None:
        """The contact for one address (prefix first, then ``asn``), or None."""
        addr = ipaddress.ip_address(ip)
        raw = (V4_MAPPED_PREFIX + addr.packed) if addr.version == 4 else addr.packed
        idx = int(self.lookup_addr16(np.frombuffer(raw, dtype=ADDR_DTYPE))[0])
        if idx < 0 and asn is not None:
            idx = self.asns.get(asn, -1)
        return self.contacts[idx] if idx >= 0 else None


def _interval_index(levels: tuple[_Level, ...]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]:
    """Flatten nested IPv4 prefixes into disjoint ranges owned by the longest covering prefix."""
    if not levels:
        return np.zeros(1, dtype=np.uint32), np.full(1, -1, dtype=np.int32)
    starts = np.concatenate([lv.keys.astype(np.uint64) for lv in levels])
    lengths = np.concatenate([np.full(lv.keys.size, lv.length, dtype=np.uint64) for lv in levels])
    owner = np.concatenate([lv.index for lv in levels])
    ends = starts + (np.uint64(1) << (np.uint64(32) - lengths))
    order = np.lexsort((lengths, starts))  # by address; a covering prefix before the ones it holds
    bounds: list[int] = []
    owners: list[int] = []
    stack: list[tuple[int, int]] = []  # (end, owner) of the prefixes covering the sweep position
    pos = 0

    def emit(upto: int, who: int) -> None:
        nonlocal pos
        if upto > pos:
            if owners and owners[-1] == who:
                pass  # same owner as the previous range: extend it
            else:
                bounds.append(pos)
                owners.append(who)
            pos = upto

    for s, e, who in zip(starts[order].tolist(), ends[order].tolist(), owner[order].tolist(), strict=True):
        while stack and stack[-1][0] <= s:
            end, top = stack.pop()
            emit(end, top)
        emit(s, stack[-1][1] if stack else -1)
        stack.append((e, who))
    while stack:
        end, top = stack.pop()
        emit(end, top)
    emit(1 << 32, -1)
    # every bound is the start of a range, so below 2**32
    return np.array(bounds, dtype=np.uint32), np.array(owners, dtype=np.int32)


def _sorted_level(
    length: int, keys: npt.NDArray[Any], index: npt.NDArray[np.int32], where: str, family: int
) -> _Level:
    order = np.argsort(keys, kind="stable")
    keys, index = keys[order], index[order]
    dup = np.flatnonzero(keys[1:] == keys[:-1])
    if dup.size:
        k = keys[dup[0]]
        if family == 4:
            text = str(ipaddress.IPv4Address(int(k)))
        else:
            text = str(ipaddress.IPv6Address(bytes(k).ljust(16, b"\0")))
        raise ConfigError(where, f"prefix {text}/{length} is listed twice")
    return _Level(length, keys, index)


def _parse_network(text: str, where: str) -> tuple[int, bytes, int]:
    """``"192.0.2.0/24"`` -> (4, packed, 24); a bare address is a host route."""
    text = text.strip()
    addr, _, plen = text.partition("/")
    try:
        if ":" in addr:
            family, packed, bits = 6, socket.inet_pton(socket.AF_INET6, addr), 128
        else:
            family, packed, bits = 4, socket.inet_pton(socket.AF_INET, addr), 32
        length = int(plen) if plen else bits
    except (OSError, ValueError):
        raise ConfigError(where, f"{text!r} is not an IP prefix") from None
    if not 0 <= length <= bits:
        raise ConfigError(where, f"{text!r}: prefix length out of range")
    value = int.from_bytes(packed, "big")
    host = value & ((1 << (bits - length)) - 1)
    if host:
        raise ConfigError(where, f"{text!r} has host bits set")
    return family, packed, length


def _parse_send(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(where, f"send: expected true or false, got {value!r}")


def _make_contact(row: Mapping[str, Any], where: str) -> Contact:
    org = str(row.get("organisation") or row.get("organization") or "").strip()
    if not org:
        raise ConfigError(where, "organisation is missing")
    ident = str(row.get("id") or "").strip() or slug(org)
    if slug(ident) != ident:
        raise ConfigError(where, f"id {ident!r} may only hold a-z, 0-9, '.', '_' and '-'")
    email = str(row.get("abuse_email") or "").strip() or None
    if email is not None and not _EMAIL.match(email):
        raise ConfigError(where, f"abuse_email {email!r} is not an e-mail address")
    rid_url = str(row.get("rid_url") or "").strip() or None
    if rid_url is not None and not rid_url.startswith("https://"):
        raise ConfigError(where, f"rid_url {rid_url!r} must be an https:// URL (RFC 6546)")
    fmt = str(row.get("format") or "").strip().lower() or ("rid" if rid_url else "xml")
    if fmt not in CONTACT_FORMATS:
        raise ConfigError(where, f"format {fmt!r} is not one of {CONTACT_FORMATS}")
    if fmt == "rid" and rid_url is None:
        raise ConfigError(where, "format rid needs a rid_url")
    tlp = str(row.get("tlp") or "amber").strip().lower()
    if tlp not in TLP_VALUES:
        raise ConfigError(where, f"tlp {tlp!r} is not one of {TLP_VALUES}")
    send = _parse_send(row.get("send", True), where)
    if send and email is None and rid_url is None:
        raise ConfigError(where, "a contact that is sent to needs an abuse_email or a rid_url")
    return Contact(ident, org, email, rid_url, fmt, tlp, send)


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.contacts: list[Contact] = []
        self.by_id: dict[str, int] = {}
        self.networks: list[tuple[int, bytes, int, int]] = []
        self.by_row: dict[tuple[Any, ...], int] = {}
        self.asns: dict[int, int] = {}

    def contact(self, contact: Contact, where: str) -> int:
        idx = self.by_id.get(contact.id)
        if idx is None:
            idx = self.by_id[contact.id] = len(self.contacts)
            self.contacts.append(contact)
        elif self.contacts[idx] != contact:
            raise ConfigError(where, f"id {contact.id!r} is given again with different details")
        return idx

    def network(self, text: str, idx: int, where: str) -> None:
        m = _ASN.match(text.strip())
        if m:
            asn = int(m.group(1))
            if asn >= 2**32:
                raise ConfigError(where, f"{text!r} is not a 32-bit AS number")
            if asn in self.asns and self.asns[asn] != idx:
                raise ConfigError(where, f"AS{asn} is listed for two contacts")
            self.asns[asn] = idx
        else:
            self.networks.append((*_parse_network(text, where), idx))

    def table(self) -> ContactTable:
        return ContactTable._assemble(self.contacts, self.networks, self.asns, self.source)


def _load_csv(text: str, source: str) -> ContactTable:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "network" not in header or "organisation" not in header:
        raise ConfigError(source, f"CSV header needs network and organisation, got {header}")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise ConfigError(source, f"unknown CSV column {unknown[0]!r} (known: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    b = _Builder(source)
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        network = (row.pop("network", None) or "").strip()
        if not network:
            raise ConfigError(where, "network is missing")
        # registry exports repeat one organisation over many prefixes: check its details once
        key = tuple(row.values())
        idx = b.by_row.get(key, -1)
        if idx < 0:
            idx = b.by_row[key] = b.contact(_make_contact(row, where), where)
        b.network(network, idx, where)
    return b.table()


def _load_toml(data: bytes, source: str) -> ContactTable:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, str(exc)) from None
    rows = doc.get("contact", [])
    if not isinstance(rows, list):
        raise ConfigError(source, "expected [[contact]] tables")
    b = _Builder(source)
    for n, row in enumerate(rows, start=1):
        where = f"{source}: contact {n}"
        if not isinstance(row, dict):
            raise ConfigError(where, "expected a table")
        extra = set(row) - set(CSV_COLUMNS) - {"prefixes", "asns", "organization"}
        if extra:
            raise ConfigError(where, f"unknown key {sorted(extra)[0]!r}")
        prefixes = row.get("prefixes", [])
        asns = row.get("asns", [])
        if not isinstance(prefixes, list) or not isinstance(asns, list) or not (prefixes or asns):
            raise ConfigError(where, "needs a list of prefixes and/or asns")
        idx = b.contact(_make_contact(row, where), where)
        for p in prefixes:
            b.network(str(p), idx, where)
        for a in asns:
            b.network(f"AS{a}" if isinstance(a, int) else str(a), idx, where)
    return b.table()


def load_contacts(path: str | Path) -> ContactTable:
    """Read a constituency table (``.toml`` or ``.csv``); errors name the file and row."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("--contacts", f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".toml":
        return _load_toml(data, str(path))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(str(path), "not UTF-8 text") from None
    return _load_csv(text, str(path))
