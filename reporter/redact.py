"""How the telescope's own address space appears in outgoing reports.

Theory of operation: a telescope is only useful while scanners do not know
where it is; operators (CAIDA, NICTER, Merit) therefore do not publish their
dark prefixes, and reports that name the exact destination addresses would
reveal them to every recipient (DOMAIN.md section 6). Reports still need a
target to be well-formed IODEF (a ``System category="target"`` with a
``Node``), so the telescope is described at one of three levels:

* redaction off: the configured dark prefixes, as ``ipv4-net``/``ipv6-net``;
* ``mask``: the prefixes cut to their leading ``redact_v4_bits`` /
  ``redact_v6_bits`` bits (``198.18.0.0/15`` with 16 bits -> ``198.18.x.x``,
  written as the network ``198.18.0.0/16``; shorter prefixes stay as they are);
* ``hide``: no address at all, an ``ext-value`` address ``redacted``.

This module is pure: settings in, address descriptions out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from reporter.settings import ReporterSettings

__all__ = ["REDACTED", "TelescopeAddress", "telescope_addresses"]

#: the address text of a fully hidden telescope
REDACTED = "redacted"


@dataclass(frozen=True, slots=True)
class TelescopeAddress:
    """One ``Address`` of the telescope as it goes into a report."""

    category: str  # IODEF address category: ipv4-net, ipv6-net or ext-value
    value: str
    ext_category: str | None = None


def _cut(net: ipaddress.IPv4Network | ipaddress.IPv6Network, bits: int) -> str:
    if net.prefixlen <= bits:
        return str(net)
    return str(net.supernet(new_prefix=bits))


@lru_cache(maxsize=8)
def telescope_addresses(settings: ReporterSettings) -> tuple[TelescopeAddress, ...]:
    """The telescope's address(es) for reports, after redaction (ordered, no duplicates)."""
    if settings.redact and settings.redact_mode == "hide":
        return (TelescopeAddress("ext-value", REDACTED, "darknet-prefix"),)
    out: list[TelescopeAddress] = []
    for net in settings.dark_prefixes().networks:
        v4 = net.version == 4
        text = str(net)
        if settings.redact:
            text = _cut(net, settings.redact_v4_bits if v4 else settings.redact_v6_bits)
        addr = TelescopeAddress("ipv4-net" if v4 else "ipv6-net", text)
        if addr not in out:
            out.append(addr)
    return tuple(out)
