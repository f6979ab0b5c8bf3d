"""Runtime schema validation: the official XSDs, from a directory the operator provides.

Theory of operation: the IETF schemas (RFC 7970 section 8, RFC 6545 section 8,
and the W3C schemas they import) are not shipped in this package -- they are
the IETF's and W3C's text, and a stale private copy would silently disagree
with the registered versions. An operator who wants full validation points
``[reporter] schemas_dir`` (or ``--schemas DIR``) at a directory holding
``iodef-2.0.xsd`` and ``rid-with-iodef-2.0.xsd`` with their imports, with every
``schemaLocation`` made local (docs/reporting.md says how to fetch them from
IANA). Compilation uses a parser that never touches the network.

Without a directory, the reporter still writes documents (built to the
schema by construction and checked in the test suite) and the receiver still
verifies signatures and does the structural checks of :mod:`reporter.rid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lxml import etree

from darknet_iodef.errors import ConfigError

__all__ = ["IODEF_XSD", "RID_XSD", "Schemas", "load_schemas"]

IODEF_XSD = "iodef-2.0.xsd"
#: RID 2.0 + IODEF 2.0 in one schema set, so the embedded document is validated too
RID_XSD = "rid-with-iodef-2.0.xsd"


@dataclass(frozen=True, slots=True)
class Schemas:
    iodef: etree.XMLSchema
    rid: etree.XMLSchema

    @staticmethod
    def errors(schema: etree.XMLSchema, doc: etree._Element) -> list[str]:
        """Validation messages (empty when valid), each ``line N: message``."""
        if schema.validate(doc):
            return []
        return [f"line {e.line}: {e.message}" for e in schema.error_log]


def _compile(path: Path, setting: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    try:
        return etree.XMLSchema(etree.parse(str(path), parser))
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc}") from None
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise ConfigError(setting, f"{path} does not compile offline: {exc}") from None


@lru_cache(maxsize=4)
def load_schemas(directory: str | Path, setting: str = "[reporter] schemas_dir") -> Schemas:
    """Compile the IODEF 2.0 and RID schemas found in ``directory`` (cached)."""
    d = Path(directory)
    for name in (IODEF_XSD, RID_XSD):
        if not (d / name).is_file():
            raise ConfigError(setting, f"{d / name} is missing")
    return Schemas(_compile(d / IODEF_XSD, setting), _compile(d / RID_XSD, setting))
