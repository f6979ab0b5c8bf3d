"""Bogon sources: addresses that cannot be the real source of Internet traffic.

Theory of operation (DOMAIN.md section 5): a packet reaching the telescope
with a source in an IANA special-purpose block that is not globally
reachable (RFC 6890 and later: private use, loopback, documentation,
shared CGN space 100.64.0.0/10, ...) was spoofed. The blocks that are
globally reachable (192.0.0.9/32, 192.0.0.10/32, 192.31.196.0/24,
192.52.193.0/24, 192.175.48.0/24 and their IPv6 peers) are more specific
entries of the same registry, so the most specific entry decides. Multicast
(224.0.0.0/4, ff00::/8) is added: a multicast address is never a source.

The registries ship as IANA's own CSV files in ``aggregator/data`` (see
SOURCES.json for the date and ``python -m aggregator.data.refresh``).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from aggregator.prefixset import Net, PrefixSet

__all__ = ["REGISTRY_FILES", "BogonTable", "RegistryEntry", "load_bogons", "parse_registry"]

REGISTRY_FILES = ("iana-ipv4-special-registry-1.csv", "iana-ipv6-special-registry-1.csv")
#: not in the special-purpose registries, never a source either (RFC 5771, RFC 4291 2.7)
EXTRA_NON_SOURCES = (("224.0.0.0/4", "Multicast"), ("ff00::/8", "Multicast"))

_FOOTNOTE = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    network: Net
    name: str
    globally_reachable: bool | None  # None: N/A or not stated (not judged a bogon)


def _truth(text: str) -> bool | None:
    t = _FOOTNOTE.sub("", text).strip().lower()
    if t == "true":
        return True
    if t == "false":
        return False
    return None


def parse_registry(text: str, source: str) -> list[RegistryEntry]:
    """Rows of an IANA special-purpose registry CSV; ValueError names the bad row."""
    reader = csv.DictReader(io.StringIO(text))
    need = {"Address Block", "Name", "Globally Reachable"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise ValueError(f"{source}: header lacks {sorted(need)}")
    out: list[RegistryEntry] = []
    for number, row in enumerate(reader, start=2):
        blocks = _FOOTNOTE.sub("", row["Address Block"] or "")
        for part in blocks.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                net = ipaddress.ip_network(part, strict=True)
            except ValueError as exc:
                raise ValueError(f"{source}: line {number}: {exc}") from None
            out.append(
                RegistryEntry(net, (row["Name"] or "").strip('"'), _truth(row["Globally Reachable"] or ""))
            )
    return out


class BogonTable:
    """Bulk test: which ``V16`` source addresses are bogons, and which block."""

    __slots__ = ("_is_bogon", "_set", "entries")

    def __init__(self, entries: list[RegistryEntry]) -> None:
        self.entries = tuple(entries)
        # IPv4-mapped ::ffff:0:0/96 is how this project stores IPv4: never match it
        usable = [
            (e.network, i)
            for i, e in enumerate(self.entries)
            if not (e.network.version == 6 and e.network == ipaddress.ip_network("::ffff:0:0/96"))
        ]
        self._set = PrefixSet(usable)
        self._is_bogon = np.array([e.globally_reachable is False for e in self.entries] + [False], dtype=bool)

    def match(self, addrs: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
        """Index of the registry entry that makes each address a bogon, or -1."""
        return self._match(self._set.lookup(addrs))

    def _match(self, lab: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        bog = self._is_bogon[lab]  # label -1 indexes the trailing False
        return np.where(bog, lab, -1)

    def is_bogon_halves(
        self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        """:meth:`is_bogon` from precomputed address halves (:func:`aggregator.keys.addr_halves`)."""
        return np.asarray(self._is_bogon[self._set.lookup_halves(hi, lo)])

    def is_bogon(self, addrs: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
        return self.match(addrs) >= 0


def load_bogons() -> BogonTable:
    """The registries shipped in ``aggregator/data`` plus multicast."""
    entries: list[RegistryEntry] = []
    pkg = resources.files("aggregator.data")
    for name in REGISTRY_FILES:
        entries.extend(parse_registry(pkg.joinpath(name).read_text("utf-8"), name))
    for cidr, name in EXTRA_NON_SOURCES:
        entries.append(RegistryEntry(ipaddress.ip_network(cidr), name, False))
    return BogonTable(entries)
