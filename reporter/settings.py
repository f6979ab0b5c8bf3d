"""Reporter settings: who we are in reports, how events are grouped, what is hidden.

Each option is declared once (``darknet_iodef.settings``): TOML table
``[reporter]``, environment ``DARKNET_IODEF_REPORTER_<NAME>``, or a flag of
``darknet-iodef report``. Checked at start-up: a bad value exits with the
setting's name before any document is written.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = ["FORMATS", "REDACT_MODES", "TLP_VALUES", "ReporterSettings"]

#: document formats the report command can write
FORMATS = ("xml", "json")
#: how the telescope's own addresses appear in reports (see reporter.redact)
REDACT_MODES = ("mask", "hide")
#: Traffic Light Protocol values IODEF 2.0 allows in ``restriction`` (RFC 7970 section 3.3.1)
TLP_VALUES = ("white", "green", "amber", "red")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


@dataclass(frozen=True, slots=True)
class ReporterSettings:
    operator_name: str = setting("Example network telescope", "the telescope operator's name (Contact)")
    operator_email: str = setting("telescope@example.net", "the operator's e-mail in every report")
    incident_name: str = setting(
        "telescope.example.net",
        "IncidentID@name: the operator's domain, so IncidentIDs are unique per CSIRT",
    )
    darknet: str = setting("198.18.0.0/15", "the telescope's dark prefixes (comma separated CIDRs)")
    period_s: int = setting(3600, "reporting period in seconds of event time (one document per period)")
    redact: bool = setting(False, "hide the dark prefixes in reports")
    redact_mode: str = setting("mask", "mask: keep only the leading bits; hide: no address at all")
    redact_v4_bits: int = setting(16, "leading IPv4 bits kept when redact_mode is mask")
    redact_v6_bits: int = setting(32, "leading IPv6 bits kept when redact_mode is mask")
    group_v4_bits: int = setting(24, "without a contact, group IPv4 sources per network of this length")
    group_v6_bits: int = setting(48, "without a contact, group IPv6 sources per network of this length")
    default_tlp: str = setting("amber", "TLP for contacts that give none, and for unassigned documents")
    formats: tuple[str, ...] = setting(("xml", "json"), "document formats to write: xml, json")
    lang: str = setting("en", "xml:lang of the documents")
    confidence_element: bool = setting(
        False,
        "also emit <Confidence rating=...> (valid under the RFC 7970 schema, invalid under the "
        "MILE WG corrected schema, which wants a number inside)",
    )
    schemas_dir: str = setting(
        "", "directory holding iodef-2.0.xsd and rid-with-iodef-2.0.xsd (validates documents; empty: off)"
    )

    def __post_init__(self) -> None:
        if not _EMAIL.match(self.operator_email):
            raise ConfigError("[reporter] operator_email", f"{self.operator_email!r} is not an e-mail")
        if not _NAME.match(self.incident_name):
            raise ConfigError("[reporter] incident_name", f"{self.incident_name!r} is not a domain-like name")
        if self.period_s < 60 or self.period_s > 86400 * 7:
            raise ConfigError("[reporter] period_s", f"{self.period_s} is outside 60 .. 604800 seconds")
        if self.redact_mode not in REDACT_MODES:
            raise ConfigError("[reporter] redact_mode", f"{self.redact_mode!r} is not one of {REDACT_MODES}")
        if not 0 <= self.redact_v4_bits <= 32 or not 0 <= self.redact_v6_bits <= 128:
            raise ConfigError("[reporter] redact_v4_bits", "mask lengths must be 0..32 and 0..128")
        if not 8 <= self.group_v4_bits <= 32 or not 16 <= self.group_v6_bits <= 128:
            raise ConfigError("[reporter] group_v4_bits", "group lengths must be 8..32 and 16..128")
        if self.default_tlp not in TLP_VALUES:
            raise ConfigError("[reporter] default_tlp", f"{self.default_tlp!r} is not one of {TLP_VALUES}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ConfigError("[reporter] formats", f"{bad or self.formats!r}: choose from {FORMATS}")
        self.dark_prefixes()  # raises ConfigError naming the setting

    def dark_prefixes(self) -> DarkPrefixes:
        return DarkPrefixes.parse(self.darknet, "[reporter] darknet")

    def replace(self, **changes: object) -> ReporterSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
